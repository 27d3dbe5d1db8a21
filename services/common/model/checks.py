"""What a job spec needs for its engine and volumes, checked the same way by the requester (at submission)
and by the compute node (before a run). A `*_problems` check yields every problem it finds as (error text,
field to blame); the matching `*_error` returns the first of them, or None.

Languages (Bacalhau v0.3's Engine Language): `{python, 3.x}` runs on the Python-in-WASM engine and `{wasm,
2.0}` on the WASM engine, deterministic only. Engine PythonWasm runs the `Language` block's program
whatever its language fields say.
"""

import posixpath
import re
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Literal

from bacalhau_grpc.common.model import pb

# Where a job's inline context (its code) is mounted.
CONTEXT_PATH = "/job"
SUPPORTED_LANGUAGES = "python 3.x, wasm 2.0"
_PYTHON_3 = re.compile(r"3(\.\d+){0,2}")
Problem = tuple[str, str]


def first(problems: Iterable[Problem]) -> Problem | None:
    """The first problem a check yields, or None."""
    return next(iter(problems), None)


def language_route(language: pb.JobSpecLanguage) -> Literal["python", "wasm"] | None:
    """Which engine runs a {language, version} pair, or None."""
    name = language.language.strip().lower()
    version = language.language_version.strip()
    if name == "python" and _PYTHON_3.fullmatch(version):
        return "python"
    if name == "wasm" and version == "2.0":
        return "wasm"
    return None


def language_error(spec: pb.Spec) -> tuple[str, str] | None:
    """Why a Language job cannot run, or None: v0.3's messages ("non-deterministic python 3.10 not
    supported yet", "ruby 3.2 is not supported (...)"), then what its Python program lacks."""
    language = spec.language
    pair = f"{language.language or '(no language)'} {language.language_version or '(no version)'}"
    if not language.deterministic:
        return f"non-deterministic {pair} not supported yet", "Spec.Language.DeterministicExecution"
    route = language_route(language)
    if route is None:
        return f"{pair} is not supported (supported: {SUPPORTED_LANGUAGES})", "Spec.Language.Language"
    return python_program_error(language) if route == "python" else None


def python_program_error(language: pb.JobSpecLanguage) -> tuple[str, str] | None:
    """What is wrong with the Python program a job names, or None (it runs offline: no requirements)."""
    if language.requirements_path:
        return (
            f"installing requirements ({language.requirements_path}) is not supported: "
            "programs run offline with the standard library only",
            "Spec.Language.RequirementsPath",
        )
    if language.command:
        return None
    if not language.program_path:
        return (
            "the job has neither a Command nor a ProgramPath: there is no Python program to run",
            "Spec.Language.Command",
        )
    if program_guest_path(language.program_path) is None:
        return (
            f"the ProgramPath {language.program_path!r} is outside the job context ({CONTEXT_PATH})",
            "Spec.Language.ProgramPath",
        )
    return None


def program_guest_path(program_path: str) -> str | None:
    """/job/<ProgramPath>, or None when the path leaves /job."""
    path = posixpath.normpath(posixpath.join(CONTEXT_PATH, program_path))
    return path if path.startswith(CONTEXT_PATH + "/") else None


def docker_problems(spec: pb.Spec) -> Iterator[Problem]:
    """Why the job's `Docker` block cannot run."""
    docker = spec.docker
    if not docker.image.strip():
        yield "a Docker job needs an image", "Spec.Docker.Image"
    if docker.working_directory and not docker.working_directory.startswith("/"):
        yield (
            f"working directory {docker.working_directory!r} is not an absolute path",
            "Spec.Docker.WorkingDirectory",
        )
    for i, variable in enumerate(docker.environment_variables):
        key, sep, _ = variable.partition("=")
        if not sep or not key or "\0" in variable:
            yield (
                f"invalid environment variable {variable!r}: use KEY=VALUE",
                f"Spec.Docker.EnvironmentVariables[{i}]",
            )


def wasm_problems(spec: pb.Spec, *, has_inline_context: bool = False) -> Iterator[Problem]:
    """Why the job's `Wasm` block cannot run. The module is the first context."""
    if not spec.contexts and not has_inline_context:
        yield "WASM job expects one context containing code to run", "Spec.Contexts"
    for key, value in spec.wasm.environment_variables.items():
        if not key or "\0" in key or "\0" in value:
            yield f"invalid environment variable {key}={value}", "Spec.Wasm.EnvironmentVariables"


def engine_problems(spec: pb.Spec, *, has_inline_context: bool = False) -> Iterator[Problem]:
    """The checks of the job's engine (nothing for engines without requirements)."""
    if spec.engine == pb.Engine.ENGINE_DOCKER:
        yield from docker_problems(spec)
    elif spec.engine == pb.Engine.ENGINE_WASM:
        yield from wasm_problems(spec, has_inline_context=has_inline_context)
    else:
        if spec.engine == pb.Engine.ENGINE_LANGUAGE:
            problem = language_error(spec)
        elif spec.engine == pb.Engine.ENGINE_PYTHON_WASM:
            problem = python_program_error(spec.language)
        else:
            problem = None
        if problem is not None:
            yield problem


def engine_error(spec: pb.Spec, *, has_inline_context: bool = False) -> Problem | None:
    """The first problem of the job's engine, or None."""
    return first(engine_problems(spec, has_inline_context=has_inline_context))


# Names an output folder cannot take: the result folder's own files.
RESERVED_OUTPUT_NAMES = frozenset({"stdout", "stderr", "exitCode"})


def output_problems(outputs: "Iterable[pb.StorageSpec]") -> Iterator[Problem]:
    """Why the output volumes cannot be made: each needs a plain folder name and an absolute path, and no
    two may share either."""
    names: set[str] = set()
    paths: set[str] = set()
    for i, output in enumerate(outputs):
        field = f"Spec.Outputs[{i}]"
        name, path = output.name, output.path
        if not name:
            yield f"output volume has no name: {path or '(no path either)'}", f"{field}.Name"
        elif name in (".", "..") or "/" in name or name in RESERVED_OUTPUT_NAMES:
            yield f"{name!r} cannot be an output folder name", f"{field}.Name"
        if not posixpath.isabs(path):
            yield f"output path {path!r} is not absolute", f"{field}.path"
        if (name and name in names) or path in paths:
            yield f"output {name}:{path} repeats another output's name or path", field
        names.add(name)
        paths.add(path)


def output_error(outputs: "Iterable[pb.StorageSpec]") -> Problem | None:
    """The first problem of the output volumes, or None."""
    return first(output_problems(outputs))


def input_problems(volumes: "Iterable[pb.StorageSpec]", *, field: str) -> Iterator[Problem]:
    """Why input volumes (or contexts) cannot be mounted: each needs an absolute path, and its source what
    it is fetched by (a CID, an http(s) URL naming a file: see `url_error`)."""
    for i, volume in enumerate(volumes):
        where = f"{field}[{i}]"
        if not posixpath.isabs(volume.path):
            yield f"input path {volume.path!r} is not absolute", f"{where}.path"
        if volume.storage_source in _NEEDS_CID and not volume.cid:
            yield "the volume has no CID", f"{where}.CID"
        if volume.storage_source == pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD:
            problem = url_error(volume.url) if volume.url else "the volume has no URL"
            if problem is not None:
                yield problem, f"{where}.URL"


def mount_clashes(groups: "Iterable[tuple[str, Iterable[pb.StorageSpec]]]") -> Iterator[Problem]:
    """Volumes a job would see at the same path (two URLs with the same file name, two inputs at one
    path, an input over the context), given as (field, volumes) groups; a volume whose own path or URL
    is wrong is left to `input_problems`."""
    seen: dict[str, str] = {}
    for field, volumes in groups:
        for i, volume in enumerate(volumes):
            try:
                path = posixpath.normpath(mount_path(volume))
            except ValueError:
                continue
            where = f"{field}[{i}]"
            if path in seen:
                yield f"mounted at {path}, where {seen[path]} is mounted already", where
            elif posixpath.isabs(path):
                seen[path] = where


def input_error(volumes: "Iterable[pb.StorageSpec]", *, field: str) -> Problem | None:
    """The first problem of the input volumes, or None."""
    return first(input_problems(volumes, field=field))


URL_SCHEMES = ("http", "https")
# The longest file name most filesystems take, in bytes.
MAX_FILE_NAME_BYTES = 255


def url_error(url: str) -> str | None:
    """Why a URLDownload volume's URL cannot be downloaded, or None: it needs the scheme http or https, a
    host and a path ending in a file name (see `url_file_name`)."""
    if not url or any(c.isspace() or not c.isprintable() for c in url):
        return f"{url!r} is not a URL: it is empty or holds spaces or control characters"
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    except ValueError as exc:
        return f"{url!r} is not a valid URL: {exc}"
    if not parsed.scheme:
        return f"{url!r} is not a URL: it has no scheme (use http or https)"
    if parsed.scheme.lower() not in URL_SCHEMES:
        return f"unsupported URL scheme {parsed.scheme!r}: use http or https"
    if not parsed.hostname:
        return f"URL {url!r} has no host"
    return _file_name_error(url)


def url_file_name(url: str) -> str:
    """The name of the file a URLDownload volume becomes, from the URL as submitted: the last segment of
    its path, percent-decoded (`http://host/data/a%20b.txt?v=2` gives `a b.txt`). The job sees the file
    at `<Path>/<name>` (see `mount_path`), sharding names its atom so, and the download is saved under
    it, whatever URL a redirect ends at. ValueError (the text of `url_error`) when the URL names no
    file: an empty last segment (`http://host/`, `http://host/dir/`), `.` or `..`, an encoded `/` or
    NUL, or more than 255 bytes."""
    problem = _file_name_error(url)
    if problem is not None:
        raise ValueError(problem)
    return _last_segment(url)


def mount_path(volume: pb.StorageSpec) -> str:
    """Where a job sees a volume: a URLDownload volume's file at `<Path>/<url_file_name>`, any other
    volume at its Path. Every engine mounts volumes there, and sharding names their atoms so."""
    if volume.storage_source == pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD:
        return posixpath.join(volume.path, url_file_name(volume.url))
    return volume.path


def _last_segment(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rpartition("/")[2])


def _file_name_error(url: str) -> str | None:
    name = _last_segment(url)
    if not name:
        return f"URL {url!r} has no file name: its path must end in the name of the file to download"
    if name in (".", ".."):
        return f"URL {url!r} has no file name: its path ends in {name!r}"
    if "/" in name or "\0" in name:
        return f"URL {url!r} ends in {name!r}, which cannot be a file name: it holds an encoded '/' or NUL"
    if len(name.encode()) > MAX_FILE_NAME_BYTES:
        return f"URL {url!r} ends in a file name longer than {MAX_FILE_NAME_BYTES} bytes"
    return None


_NEEDS_CID = frozenset(
    {
        pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS,
        pb.StorageSourceType.STORAGE_SOURCE_TYPE_FILECOIN_UNSEALED,
        pb.StorageSourceType.STORAGE_SOURCE_TYPE_ESTUARY,
        pb.StorageSourceType.STORAGE_SOURCE_TYPE_FILECOIN,
    }
)
