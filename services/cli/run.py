"""The commands that build a job from flags and submit it (Bacalhau v0.3's `docker run`, `wasm run`,
`wasm validate` and `run python`), with v0.3's flags and defaults except where v0.3 had a bug:

* `docker run IMAGE [-- CMD ARGS...]`: the words after the image replace its entrypoint (flags for the
  container go after `--`); engine Docker, verifier Noop, publisher Local (v0.3: Estuary).
* `wasm run {CID | FILE.wasm} [ARGS...]`: a CID is the module's context volume (mounted at /job); a local
  file is uploaded with the submission as its context (a tar.gz of at most 10 MiB). Verifier
  Deterministic, or Noop with concurrency 1; entry point `_start`; ARGS are the module's argv[1:].
* `wasm validate FILE.wasm`: see `cli.wasm_validate`.
* `run python [FILE.py] [-c CMD]`: an Engine=Language job `{python, 3.10, deterministic}` run on CPython
  for WASI; a FILE inside `--context-path` (default .) is uploaded with that folder as the context.
  `-r/--requirement` is refused (programs run offline, standard library only); v0.3's `-e` (parsed but
  never passed on, and the Language spec has no environment) is gone.

Every one of them goes through `cli.submit`: local checks, `--dry-run`, the SDK's Client, `--wait`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from bacalhau_grpc.cli import flags, submit, submit_flags
from bacalhau_grpc.cli.extras import require_node_extra
from bacalhau_grpc.cli.flags import CommandError
from bacalhau_grpc.cli.submit import PROG, Submission
from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.content.store import MAX_CONTEXT_BYTES, check_cid
from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.model import checks, enums, jobs
from bacalhau_grpc.sdk import sdk_types

T = sdk_types
MAX_CONTEXT_FILES = 10_000  # what the requester unpacks at most (common.content.archive)
IMPORT_MODULES_PATH = "/modules"


def _job(spec: sdk_types.Spec, args: argparse.Namespace) -> sdk_types.Job:
    return T.Job(api_version=jobs.api_version_latest(), spec=spec, deal=submit_flags.deal(args))


def _choices(args: argparse.Namespace, verifier: str) -> dict[str, Any]:
    return {
        "verifier": T.Verifier(submit_flags.parse_choice(enums.VERIFIER, verifier, "--verifier")),
        "publisher": T.Publisher(submit_flags.parse_choice(enums.PUBLISHER, args.publisher, "--publisher")),
    }


# ------------------------------------------------------------------------------------------ docker run


def docker_submission(args: argparse.Namespace) -> Submission:
    if args.workdir and not args.workdir.startswith("/"):
        raise CommandError(f"workdir must be an absolute path. Passed in: {args.workdir}")
    spec = T.Spec(
        engine=T.Engine(submit_flags.parse_choice(enums.ENGINE, args.engine, "--engine")),
        **_choices(args, args.verifier),
        docker=T.JobSpecDocker(
            image=args.image,
            entrypoint=list(args.command),
            environment_variables=submit_flags.split_env(args.env),
            working_directory=args.workdir or "",
        ),
        timeout=args.timeout,
        inputs=submit_flags.input_volumes(args.inputs, args.input_urls, args.input_volumes),
        outputs=submit_flags.output_volumes(args.output_volumes),
        annotations=submit_flags.safe_labels(args.labels),
        do_not_track=submit_flags.do_not_track(),
    )
    if args.cpu or args.memory or args.gpu:
        spec.resources = T.ResourceUsageConfig(cpu=args.cpu, memory=args.memory, gpu=args.gpu)
    if args.sharding_glob_pattern:
        spec.sharding = T.JobShardingConfig(
            glob_pattern=args.sharding_glob_pattern,
            base_path=args.sharding_base_path.rstrip("/") or "/",
            batch_size=args.sharding_batch_size,
        )
    return Submission(_job(spec, args))


DOCKER_EXAMPLES = f"""\
examples:
  # run a command in an image and wait for its results (every shard)
  {PROG} docker run ubuntu -- echo hello

  # flags for the container go after --; inputs by CID at /inputs, and at a path of your own
  {PROG} docker run -i QmCID1 -v QmCID2:/data ubuntu -- sh -c 'ls -l /inputs /data > /outputs/list'

  # three nodes must agree on the results; print only the job's ID and do not wait
  {PROG} docker run --verifier deterministic -c 3 --confidence 2 --wait=false ubuntu -- date +%Y

  # wait, then download the results (raw/, per_shard/, combined_results/) into ./results
  {PROG} docker run --download --output-dir results ubuntu -- echo hi

  # print the job file instead of submitting it (`create` takes it unchanged)
  {PROG} docker run --dry-run ubuntu -- echo hi > job.yaml
"""


def _add_docker_run(subparsers: Any) -> None:
    parser = flags.command_parser(
        subparsers,
        "run",
        help="run a Docker image as a job",
        description="Build a Docker job from the flags and submit it: the words after IMAGE replace the "
        "image's entrypoint (put flags meant for the container after --). It is checked here first, "
        "then signed with your key and followed until every shard has ended.",
        epilog=DOCKER_EXAMPLES,
    )
    parser.add_argument("image", help="the Docker image")
    parser.add_argument("command", nargs="*", metavar="CMD", help="the entrypoint and its arguments")
    submit_flags.add_engine_choice_flags(parser, engine=True)
    submit_flags.add_deal_flags(parser)
    submit_flags.add_input_flags(parser)
    submit_flags.add_output_flags(parser)
    submit_flags.add_env_flag(parser)
    parser.add_argument("-w", "--workdir", default="", help="the working directory (an absolute path)")
    submit_flags.add_label_flags(parser)
    resources = parser.add_argument_group("resources")
    resources.add_argument("--cpu", default="", help="CPU the job needs, e.g. 500m or 2 (default 100m)")
    resources.add_argument(
        "--memory", default="", help="memory the job needs, e.g. 500Mb or 2Gb (default 100Mb)"
    )
    resources.add_argument("--gpu", default="", help="GPUs the job needs, e.g. 1")
    sharding = parser.add_argument_group("sharding")
    sharding.add_argument(
        "--sharding-glob-pattern",
        default="",
        help="split the inputs into shards by this glob (default: no sharding)",
    )
    sharding.add_argument(
        "--sharding-base-path",
        default=submit_flags.INPUTS_PATH,
        help="the glob's base path (default /inputs)",
    )
    sharding.add_argument("--sharding-batch-size", type=int, default=1, help="matches per shard (default 1)")
    submit_flags.add_runtime_flags(parser, skip_syntax_checking=True)
    flags.add_api_flags(parser)
    parser.set_defaults(handler=lambda args: submit.run_submission(args, lambda: docker_submission(args)))


# -------------------------------------------------------------------------------------------- wasm run


def _is_cid(text: str) -> bool:
    try:
        check_cid(text)
    except InvalidArgumentError:
        return False
    return True


def import_modules(urls: list[str], volumes: list[str]) -> list[sdk_types.StorageSpec]:
    """-U URLs and -I CID[:PATH] volumes, each at its own path under /modules unless given one."""
    modules: list[sdk_types.StorageSpec] = []
    for url in submit_flags.split_list(urls):
        modules.append(submit_flags.url_volume(url.strip("'\" "), f"{IMPORT_MODULES_PATH}/{len(modules)}"))
    for volume in submit_flags.split_list(volumes):
        cid, sep, path = volume.partition(":")
        if not cid or (sep and not path):
            raise CommandError(f"invalid import module volume: {volume}")
        modules.append(submit_flags.ipfs_volume(cid, path or f"{IMPORT_MODULES_PATH}/{len(modules)}"))
    return modules


def wasm_submission(args: argparse.Namespace) -> Submission:
    verifier = args.verifier or ("deterministic" if args.concurrency > 1 else "noop")
    contexts: list[sdk_types.StorageSpec] = []
    context, notice, note = b"", "", ""
    if _is_cid(args.module):
        contexts.append(submit_flags.ipfs_volume(args.module, checks.CONTEXT_PATH, name="module"))
    else:
        path = Path(args.module)
        if not path.exists():
            raise CommandError(f"{args.module!r} is not a valid CID or local file: no such file")
        if not path.is_file():
            raise CommandError(f"{args.module} should point to a single file")
        data = path.read_bytes()
        if len(data) > MAX_CONTEXT_BYTES:
            raise CommandError(
                f"{args.module} is {len(data)} bytes; at most {MAX_CONTEXT_BYTES} can be uploaded"
            )
        context = make_tar_gz({path.name: data})
        notice = f'Uploading "{args.module}" to server to execute command in context, press Ctrl+C to cancel'
        note = (
            f"{args.module} is uploaded with the job as its context, mounted at {checks.CONTEXT_PATH} "
            "(this file alone does not carry it)"
        )
    spec = T.Spec(
        engine=T.Engine.WASM,
        **_choices(args, verifier),
        wasm=T.JobSpecWasm(
            entry_point=args.entry_point,
            parameters=list(args.args),
            environment_variables=submit_flags.env_map(args.env),
            import_modules=import_modules(args.import_module_urls, args.import_module_volumes),
        ),
        timeout=args.timeout,
        inputs=submit_flags.input_volumes(urls=args.input_urls, volumes=args.input_volumes),
        contexts=contexts,
        outputs=submit_flags.output_volumes([]),
    )
    return Submission(_job(spec, args), context=context, notice=notice, dry_run_note=note)


WASM_RUN_EXAMPLES = f"""\
examples:
  # run a local module (uploaded with the job) with two arguments
  {PROG} wasm run main.wasm arg1 arg2

  # a module already stored under a CID, another entry point, an environment variable
  {PROG} wasm run QmModuleCID --entry-point greet -e NAME=world

  # an input volume at /data, and a module it imports from another CID
  {PROG} wasm run main.wasm -v QmDataCID:/data -I QmImportedModuleCID
"""


def _add_wasm_run(subparsers: Any) -> None:
    parser = flags.command_parser(
        subparsers,
        "run",
        help="run a WebAssembly module as a job",
        description="Build a WASM job and submit it. MODULE is a CID (the module's context volume) or a "
        "local .wasm file, uploaded with the job (at most 10 MiB) and mounted at /job. ARGS become the "
        "module's argv[1:]. The module runs under WASI preview 1 with virtual clocks and random numbers, "
        "so every node prints the same.",
        epilog=WASM_RUN_EXAMPLES,
    )
    parser.add_argument("module", metavar="MODULE", help="a CID or a local .wasm file")
    parser.add_argument("args", nargs="*", metavar="ARGS", help="the module's arguments")
    submit_flags.add_engine_choice_flags(parser, verifier_default=None)
    submit_flags.add_deal_flags(parser)
    parser.add_argument(
        "--entry-point", default="_start", help="the exported function to call (default _start)"
    )
    submit_flags.add_input_flags(parser, cids=False)
    submit_flags.add_env_flag(parser)
    modules = parser.add_argument_group("import modules")
    modules.add_argument(
        "-U",
        "--import-module-urls",
        action="append",
        default=[],
        metavar="URL",
        help="an http(s) URL of a module to link before MODULE (repeatable)",
    )
    modules.add_argument(
        "-I",
        "--import-module-volumes",
        action="append",
        default=[],
        metavar="CID[:PATH]",
        help="a module stored under a CID to link before MODULE (repeatable)",
    )
    submit_flags.add_runtime_flags(parser)
    flags.add_api_flags(parser)
    parser.set_defaults(handler=lambda args: submit.run_submission(args, lambda: wasm_submission(args)))


# --------------------------------------------------------------------------------------- wasm validate


def cmd_wasm_validate(args: argparse.Namespace) -> int:
    require_node_extra("wasm validate")  # it compiles the module with wasmtime
    from bacalhau_grpc.cli.wasm_validate import validate

    verdict = validate(Path(args.module), args.entry_point)
    if verdict.code == 0:
        print("OK")
    else:
        print(f"Error: {verdict.message}", file=sys.stderr)
    return verdict.code


WASM_VALIDATE_EXAMPLES = f"""\
examples:
  {PROG} wasm validate main.wasm                      # OK, exit code 0
  {PROG} wasm validate reactor.wasm --entry-point greet

exit codes: 0 valid, 1 not a module that compiles, 2 an unresolved import or a bad entry point,
3 the WASI runtime could not be set up
"""


def _add_wasm_validate(subparsers: Any) -> None:
    parser = flags.command_parser(
        subparsers,
        "validate",
        help="check a WebAssembly module locally",
        description="Check that a local module compiles, imports only WASI preview 1 functions, and exports "
        "the entry point as a function without parameters or results. Prints OK.",
        epilog=WASM_VALIDATE_EXAMPLES,
    )
    parser.add_argument("module", metavar="FILE", help="the .wasm file")
    parser.add_argument("--entry-point", default="_start", help="the function to check (default _start)")
    parser.set_defaults(handler=cmd_wasm_validate)


# ------------------------------------------------------------------------------------------ run python


def pack_folder(folder: Path) -> bytes:
    """A tar.gz of the regular files under `folder` (links and special files are left out), within what
    the requester unpacks: MAX_CONTEXT_BYTES of file data and MAX_CONTEXT_FILES files."""
    if not folder.is_dir():
        raise CommandError(f"the context path {folder} is not a folder")
    files: dict[str, bytes] = {}
    total = 0
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root, name)
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            total += len(data)
            if total > MAX_CONTEXT_BYTES or len(files) >= MAX_CONTEXT_FILES:
                raise CommandError(
                    f"the context path {folder} holds more than {MAX_CONTEXT_BYTES // 2**20} MiB or "
                    f"{MAX_CONTEXT_FILES} files, the most a job can upload; choose a smaller --context-path"
                )
            files[path.relative_to(folder).as_posix()] = data
    if not files:
        raise CommandError(f"the context path {folder} holds no file")
    return make_tar_gz(files)


def program_path(context_dir: Path, program: str) -> str:
    """The program's path inside the context (what ProgramPath holds): the file as given, relative to the
    current folder or to the context path, must be a file inside the context path."""
    root = context_dir.resolve()
    for candidate in (Path(program), context_dir / program):
        resolved = candidate.resolve()
        if resolved.is_file() and resolved.is_relative_to(root):
            return resolved.relative_to(root).as_posix()
    raise CommandError(
        f"{program} is not a file inside the context path {context_dir} (it is uploaded as /job; "
        "see --context-path)"
    )


def python_submission(args: argparse.Namespace) -> Submission:
    if args.file and args.command:
        raise CommandError("give either a Python file or -c/--command, not both")
    if not args.file and not args.command:
        raise CommandError("Please specify an inline command or a path to a python file.")
    language = T.JobSpecLanguage(
        language=submit_flags.LANGUAGE_PYTHON,
        language_version=submit_flags.LANGUAGE_PYTHON_VERSION,
        deterministic=args.deterministic,
        command=args.command or "",
        requirements_path=args.requirement or "",
    )
    context_dir = Path(args.context_path)
    context, notice, note = b"", "", ""
    if args.file:
        language.program_path = program_path(context_dir, args.file)
        if not args.requirement:  # refused anyway: nothing to upload for it
            context = pack_folder(context_dir)
        notice = f'Uploading "{context_dir}" to server to execute command in context, press Ctrl+C to cancel'
        note = (
            f"the folder {context_dir} is uploaded with the job as its context, mounted at "
            f"{checks.CONTEXT_PATH} (this file alone does not carry it)"
        )
    spec = T.Spec(
        engine=T.Engine.LANGUAGE,
        **_choices(args, args.verifier),
        language=language,
        timeout=args.timeout,
        inputs=submit_flags.input_volumes(args.inputs, args.input_urls, args.input_volumes),
        outputs=submit_flags.output_volumes(args.output_volumes),
        annotations=submit_flags.safe_labels(args.labels),
        do_not_track=submit_flags.do_not_track(),
    )
    return Submission(_job(spec, args), context=context, notice=notice, dry_run_note=note)


RUN_PYTHON_EXAMPLES = f"""\
examples:
  # an inline program
  {PROG} run python -c 'print(1 + 1)'

  # a program in the current folder, which is uploaded with it (at most 10 MiB) and mounted at /job
  {PROG} run python main.py

  # a program in ./src, reading an input volume
  {PROG} run python --context-path src src/main.py -v QmDataCID:/data

Programs run on CPython 3.12 for WASI, deterministically (fixed hash seed, virtual clocks and random
numbers), offline and with the standard library only: requirements files are refused.
"""


def _add_run_python(subparsers: Any) -> None:
    parser = flags.command_parser(
        subparsers,
        "python",
        help="run a Python program as a job",
        description="Build a deterministic Python job (Engine Language: python 3.10, run on CPython for "
        "WASI) from an inline command or a program file, and submit it.",
        epilog=RUN_PYTHON_EXAMPLES,
    )
    parser.add_argument("file", nargs="?", metavar="FILE.py", help="the program, inside --context-path")
    parser.add_argument("-c", "--command", help="an inline program (-c is not --concurrency here)")
    parser.add_argument(
        "-r",
        "--requirement",
        metavar="FILE",
        help="a requirements file: refused, programs run offline with the standard library only",
    )
    parser.add_argument(
        "--context-path", default=".", help="the folder uploaded with FILE.py and mounted at /job (default .)"
    )
    flags.add_bool_flag(
        parser,
        "deterministic",
        default=True,
        help="run deterministically (default; --deterministic=false is not supported)",
    )
    submit_flags.add_engine_choice_flags(parser)
    submit_flags.add_deal_flags(parser, concurrency_short=False)
    submit_flags.add_input_flags(parser)
    submit_flags.add_output_flags(parser)
    submit_flags.add_label_flags(parser)
    submit_flags.add_runtime_flags(parser)
    flags.add_api_flags(parser)
    parser.set_defaults(handler=lambda args: submit.run_submission(args, lambda: python_submission(args)))


# --------------------------------------------------------------------------------------- registration


def add_parsers(subparsers: Any) -> None:
    """`docker run`, `wasm run`, `wasm validate` and `run python`."""
    docker = subparsers.add_parser(
        "docker", help="run Docker jobs", description="Docker jobs: `docker run IMAGE [-- CMD ARGS...]`."
    )
    cobra = flags.CobraWordsParser  # before --, a word that starts with - is a flag, as in v0.3
    _add_docker_run(
        docker.add_subparsers(dest="docker_command", metavar="COMMAND", required=True, parser_class=cobra)
    )
    wasm = subparsers.add_parser(
        "wasm",
        help="run and check WebAssembly jobs",
        description="WebAssembly jobs: `wasm run`, `wasm validate`.",
    )
    wasm_commands = wasm.add_subparsers(
        dest="wasm_command", metavar="COMMAND", required=True, parser_class=cobra
    )
    _add_wasm_run(wasm_commands)
    _add_wasm_validate(wasm_commands)
    run = subparsers.add_parser(
        "run", help="run programs in a language as jobs", description="Language jobs: `run python`."
    )
    _add_run_python(
        run.add_subparsers(dest="run_command", metavar="LANGUAGE", required=True, parser_class=cobra)
    )
