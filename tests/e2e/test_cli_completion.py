"""`bacalhau-grpc completion {bash,zsh,fish}`: the script the real CLI prints is loaded by the real shell and
completes subcommands, nested subcommands and flags (bash through its completion function, zsh on a
pseudo-terminal by pressing Tab, fish with `complete -C`). The shells come from `scripts/shells-install.sh`
(a `make test` prerequisite)."""

import os
import pty
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e import cli_support

TIMEOUT = 30.0
SHELLS_INSTALL = Path(__file__).resolve().parents[2] / "scripts" / "shells-install.sh"


def shell(name: str) -> str:
    """The shell's path; `scripts/shells-install.sh` installs it when it is missing (as `make test` does)."""
    if shutil.which(name) is None:
        subprocess.run([str(SHELLS_INSTALL)], check=True, timeout=600)
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed after {SHELLS_INSTALL}"
    return path


def env() -> dict[str, str]:
    """The environment with the CLI's folder first on PATH (the scripts complete `bacalhau-grpc`)."""
    folder = str(Path(cli_support.COMMAND[0]).parent) if len(cli_support.COMMAND) == 1 else ""
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/")}


@pytest.fixture(scope="module")
def scripts(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("completion")
    found = {}
    for name in ("bash", "zsh", "fish"):
        done = subprocess.run(
            [*cli_support.COMMAND, "completion", name],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() and not done.stderr
        found[name] = folder / f"bacalhau-grpc.{name}"
        found[name].write_text(done.stdout)
    return found


def bash_complete(script: Path, *words: str) -> list[str]:
    """The completions bash's completion function offers for the last of `words`."""
    line = " ".join(f"'{w}'" for w in ("bacalhau-grpc", *words))
    done = subprocess.run(
        [
            shell("bash"),
            "-c",
            f'source "$1"; COMP_WORDS=({line}); COMP_CWORD={len(words)}; COMP_LINE="${{COMP_WORDS[*]}}"; '
            'COMP_POINT=${#COMP_LINE}; _shtab_bacalhau_grpc bacalhau-grpc; printf "%s\\n" "${COMPREPLY[@]}"',
            "bash",
            str(script),
        ],
        capture_output=True,
        text=True,
        env=env(),
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return [word.strip() for word in done.stdout.splitlines() if word.strip()]


def test_bash_completes_subcommands_nested_subcommands_and_flags(scripts):
    assert bash_complete(scripts["bash"], "li") == ["list"]
    assert set(bash_complete(scripts["bash"], "")) >= {"list", "get", "docker", "wasm", "completion"}
    assert bash_complete(scripts["bash"], "node", "des") == ["describe"]
    assert "--output-dir" in bash_complete(scripts["bash"], "get", "--out")
    assert set(bash_complete(scripts["bash"], "completion", "")) == {"bash", "zsh", "fish"}


def fish_complete(script: Path, line: str) -> list[str]:
    done = subprocess.run(
        [shell("fish"), "--no-config", "-c", 'source $argv[1]; complete -C"$argv[2]"', str(script), line],
        capture_output=True,
        text=True,
        env=env(),
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return [row.split("\t")[0] for row in done.stdout.splitlines()]


def test_fish_completes_subcommands_nested_subcommands_flags_and_choices(scripts):
    assert fish_complete(scripts["fish"], "bacalhau-grpc li") == ["list"]
    assert sorted(fish_complete(scripts["fish"], "bacalhau-grpc node ")) == ["describe", "list"]
    assert fish_complete(scripts["fish"], "bacalhau-grpc docker run --verif") == ["--verifier"]
    assert "--output-dir" in fish_complete(scripts["fish"], "bacalhau-grpc get --out")
    assert sorted(fish_complete(scripts["fish"], "bacalhau-grpc list --output ")) == ["json", "table", "yaml"]
    assert sorted(fish_complete(scripts["fish"], "bacalhau-grpc completion ")) == ["bash", "fish", "zsh"]
    # a flag of another command is not offered
    assert "--output-dir" not in fish_complete(scripts["fish"], "bacalhau-grpc list --")


class Terminal:
    """An interactive zsh on a pseudo-terminal: what it prints, read until a pattern shows up."""

    def __init__(self, zshrc: Path) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [shell("zsh"), "-i"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env(), "ZDOTDIR": str(zshrc.parent), "TERM": "dumb"},
            start_new_session=True,
        )
        os.close(slave)
        self.screen = ""

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_for(self, pattern: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        regex = re.compile(pattern)
        while not regex.search(self.screen):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{pattern!r} not shown within {TIMEOUT} s; the terminal:\n{self.screen}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.screen += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # the shell exited
                    break
        assert regex.search(self.screen), f"{pattern!r} not shown; the terminal:\n{self.screen}"

    def close(self) -> None:
        self.process.kill()
        self.process.wait(TIMEOUT)
        os.close(self.master)


def test_zsh_completes_subcommands_and_flags_on_a_terminal(scripts, tmp_path):
    # installed as the README says: the script as _bacalhau-grpc in a folder on fpath, before compinit
    functions = tmp_path / "zfunc"
    functions.mkdir()
    shutil.copy(scripts["zsh"], functions / "_bacalhau-grpc")
    zshrc = tmp_path / ".zshrc"
    zshrc.write_text(
        f"fpath+=({functions})\n"
        "autoload -Uz compinit && compinit -u -d $ZDOTDIR/.zcompdump\n"
        "PS1='READY> '\n"
        "unsetopt beep\n"
    )
    terminal = Terminal(zshrc)
    try:
        terminal.wait_for(r"READY> ")
        terminal.send('echo "completer: $_comps[bacalhau-grpc]"\n')
        terminal.wait_for(r"completer: _bacalhau-grpc")
        terminal.send("bacalhau-grpc li\t")
        terminal.wait_for(r"bacalhau-grpc list ")
        terminal.send("\x15bacalhau-grpc node desc\t")  # Ctrl+U clears the line first
        terminal.wait_for(r"bacalhau-grpc node describe ")
        terminal.send("\x15bacalhau-grpc get --output-d\t")
        terminal.wait_for(r"--output-dir +-- where to write them")  # offered (with its help)
    finally:
        terminal.close()


def test_an_unknown_shell_is_a_usage_error_naming_the_shells():
    done = subprocess.run(
        [*cli_support.COMMAND, "completion", "powershell"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 2
    assert not done.stdout
    assert "usage: bacalhau-grpc completion" in done.stderr
    assert "argument SHELL: invalid choice: 'powershell'" in done.stderr
    assert re.search(r"choose from '?bash'?, '?zsh'?, '?fish'?", done.stderr), done.stderr
