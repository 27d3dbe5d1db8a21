"""`completion {bash,zsh,fish}`: print the shell completion script of the whole command line.

bash and zsh scripts come from shtab (generated from the argparse parser, so they follow every command and
flag as they are defined); shtab has no fish output, so the fish script is built here from the same parser:
the subcommands at each level (`docker run`, `node list`, ...), each command's flags with their help, and
the choices of flags that have them.
"""

import argparse
import sys

import shtab

from bacalhau_grpc.cli import flags

PROG = "bacalhau-grpc"
SHELLS = ("bash", "zsh", "fish")

EXAMPLES = f"""\
install (then open a new shell):
  bash: {PROG} completion bash > ~/.local/share/bash-completion/completions/{PROG}
  zsh:  {PROG} completion zsh > ~/.zfunc/_{PROG}
        (~/.zshrc: fpath+=(~/.zfunc) before autoload -Uz compinit && compinit)
  fish: {PROG} completion fish > ~/.config/fish/completions/{PROG}.fish
or for the current shell only:
  bash: source <({PROG} completion bash)
  fish: {PROG} completion fish | source"""


def add_parser(commands, root: argparse.ArgumentParser) -> None:
    parser = flags.command_parser(
        commands,
        "completion",
        help="print the shell completion script (bash, zsh or fish)",
        description="Print the completion script of this command line for SHELL on stdout; see the "
        "examples for where to put it.",
        epilog=EXAMPLES,
    )
    parser.add_argument("shell", metavar="SHELL", choices=SHELLS, help="bash, zsh or fish")
    parser.set_defaults(handler=cmd_completion, root_parser=root)


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(script(args.root_parser, args.shell))
    sys.stdout.flush()
    return 0


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of `parser` for `shell` (one of SHELLS)."""
    if shell == "fish":
        return fish_script(parser)
    return shtab.complete(parser, shell=shell)


# ------------------------------------------------------------------------------------------------- fish


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(name, parser, help) of each subcommand of `parser`, in the order they were added."""
    found: list[tuple[str, argparse.ArgumentParser, str]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((name, sub, helps.get(name, "")))
    return found


def _quote(text: str) -> str:
    """`text` as one single-quoted fish word (its first line, without trailing spaces)."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return "'" + line.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _help(action: argparse.Action) -> str:
    if action.help in (None, argparse.SUPPRESS):
        return ""
    try:
        return str(action.help) % {"default": action.default, "prog": PROG}
    except (KeyError, TypeError, ValueError):
        return str(action.help)


def fish_script(parser: argparse.ArgumentParser) -> str:
    function = "__" + PROG.replace("-", "_")
    lines: list[str] = []

    def walk(current: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        condition = f"-n '{function}_is {' '.join(path)}'" if path else f"-n '{function}_is'"
        subs = _subcommands(current)
        for name, _, help_text in subs:
            lines.append(f"complete -c {PROG} {condition} -f -a {name} -d {_quote(help_text)}")
        for action in current._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            if not action.option_strings:
                if action.choices:  # a positional with choices: those, not files
                    choices = " ".join(str(c) for c in action.choices)
                    lines.append(f"complete -c {PROG} {condition} -f -a {_quote(choices)}")
                continue
            words = [f"complete -c {PROG} {condition}"]
            for option in action.option_strings:
                if option.startswith("--"):
                    words.append(f"-l {option[2:]}")
                elif len(option) == 2:
                    words.append(f"-s {option[1:]}")
                else:
                    words.append(f"-o {option[1:]}")
            if action.choices:
                words.append("-x -a " + _quote(" ".join(str(c) for c in action.choices)))
            elif action.nargs != 0:
                words.append("-r")
            words.append(f"-d {_quote(_help(action))}")
            lines.append(" ".join(words))
        for name, sub, _ in subs:
            walk(sub, (*path, name))

    walk(parser, ())
    header = f"""# fish completion for {PROG}:
#   {PROG} completion fish > ~/.config/fish/completions/{PROG}.fish

# The subcommand path typed so far ("", "docker", "docker run", ...): the words that continue it.
function {function}_path
    set -l path
    set -l words (commandline -opc)
    set -e words[1]
    for word in $words
        string match -q -- '-*' $word; and continue
        if contains -- $word ({function}_children "$path")
            set path $path $word
        end
    end
    string join ' ' -- $path
end

function {function}_is
    set -l path ({function}_path)
    test "$path" = "$argv"
end
"""
    children = [f"function {function}_children", "    switch $argv[1]"]
    tree: dict[str, list[str]] = {}

    def collect(current: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        subs = _subcommands(current)
        if subs:
            tree[" ".join(path)] = [name for name, _, _ in subs]
        for name, sub, _ in subs:
            collect(sub, (*path, name))

    collect(parser, ())
    for level, names in tree.items():
        children.append(f"        case {_quote(level)}")
        children.append(f"            printf '%s\\n' {' '.join(names)}")
    children += ["    end", "end", ""]
    return header + "\n".join(children) + "\n" + "\n".join(lines) + "\n"
