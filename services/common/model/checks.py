"""What a job spec needs for its engine and volumes, checked the same way by the requester (at submission)
and by the compute node (before a run). Each check returns the error text and the field to blame, or None.

Languages (Engine Language, v0.3 §3.4): `{python, 3.x}` runs on the Python-in-WASM engine and `{wasm,
2.0}` on the WASM engine, deterministic only. Engine PythonWasm runs the `Language` block's program
whatever its language fields say.
"""

import posixpath
import re
import urllib.parse
from typing import Literal

from bacalhau_grpc.common.model import pb

# Where a job's inline context (its code) is mounted.
CONTEXT_PATH = "/job"
SUPPORTED_LANGUAGES = "python 3.x, wasm 2.0"
_PYTHON_3 = re.compile(r"3(\.\d+){0,2}")


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


def docker_error(spec: pb.Spec) -> tuple[str, str] | None:
    """Why the job's `Docker` block cannot run, or None."""
    docker = spec.docker
    if not docker.image.strip():
        return "a Docker job needs an image", "Spec.Docker.Image"
    if docker.working_directory and not docker.working_directory.startswith("/"):
        return (
            f"working directory {docker.working_directory!r} is not an absolute path",
            "Spec.Docker.WorkingDirectory",
        )
    for i, variable in enumerate(docker.environment_variables):
        key, sep, _ = variable.partition("=")
        if not sep or not key or "\0" in variable:
            return (
                f"invalid environment variable {variable!r}: use KEY=VALUE",
                f"Spec.Docker.EnvironmentVariables[{i}]",
            )
    return None


def wasm_error(spec: pb.Spec, *, has_inline_context: bool = False) -> tuple[str, str] | None:
    """Why the job's `Wasm` block cannot run, or None. The module is the first context."""
    if not spec.contexts and not has_inline_context:
        return "WASM job expects one context containing code to run", "Spec.Contexts"
    for key, value in spec.wasm.environment_variables.items():
        if not key or "\0" in key or "\0" in value:
            return f"invalid environment variable {key}={value}", "Spec.Wasm.EnvironmentVariables"
    return None


def engine_error(spec: pb.Spec, *, has_inline_context: bool = False) -> tuple[str, str] | None:
    """The check of the job's engine (None for engines without requirements)."""
    if spec.engine == pb.Engine.ENGINE_DOCKER:
        return docker_error(spec)
    if spec.engine == pb.Engine.ENGINE_WASM:
        return wasm_error(spec, has_inline_context=has_inline_context)
    if spec.engine == pb.Engine.ENGINE_LANGUAGE:
        return language_error(spec)
    if spec.engine == pb.Engine.ENGINE_PYTHON_WASM:
        return python_program_error(spec.language)
    return None


# Names an output folder cannot take: the result folder's own files.
RESERVED_OUTPUT_NAMES = frozenset({"stdout", "stderr", "exitCode"})


def output_error(outputs: "list[pb.StorageSpec] | tuple[pb.StorageSpec, ...]") -> tuple[str, str] | None:
    """Why the output volumes cannot be made, or None: each needs a plain folder name and an absolute
    path, and no two may share either."""
    names: set[str] = set()
    paths: set[str] = set()
    for i, output in enumerate(outputs):
        field = f"Spec.Outputs[{i}]"
        name, path = output.name, output.path
        if not name:
            return f"output volume has no name: {path or '(no path either)'}", f"{field}.Name"
        if name in (".", "..") or "/" in name or name in RESERVED_OUTPUT_NAMES:
            return f"{name!r} cannot be an output folder name", f"{field}.Name"
        if not posixpath.isabs(path):
            return f"output path {path!r} is not absolute", f"{field}.path"
        if name in names or path in paths:
            return f"output {name}:{path} repeats another output's name or path", field
        names.add(name)
        paths.add(path)
    return None


def input_error(
    volumes: "list[pb.StorageSpec] | tuple[pb.StorageSpec, ...]", *, field: str
) -> tuple[str, str] | None:
    """Why input volumes (or contexts) cannot be mounted, or None: each needs an absolute path, and its
    source what it is fetched by (a CID, an http(s) URL naming a file: see `url_error`)."""
    for i, volume in enumerate(volumes):
        where = f"{field}[{i}]"
        if not posixpath.isabs(volume.path):
            return f"input path {volume.path!r} is not absolute", f"{where}.path"
        if volume.storage_source in _NEEDS_CID and not volume.cid:
            return "the volume has no CID", f"{where}.CID"
        if volume.storage_source == pb.StorageSourceType.STORAGE_SOURCE_TYPE_URL_DOWNLOAD:
            problem = url_error(volume.url) if volume.url else "the volume has no URL"
            if problem is not None:
                return problem, f"{where}.URL"
    return None


URL_SCHEMES = ("http", "https")


def url_error(url: str) -> str | None:
    """Why a URLDownload volume's URL cannot be downloaded, or None: it needs the scheme http or https, a
    host and a path naming the file (`http://example.com` names none)."""
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
    if parsed.path in ("", "/"):
        return f"URL {url!r} has no file path: name the file to download"
    return None


_NEEDS_CID = frozenset(
    {
        pb.StorageSourceType.STORAGE_SOURCE_TYPE_IPFS,
        pb.StorageSourceType.STORAGE_SOURCE_TYPE_FILECOIN_UNSEALED,
        pb.StorageSourceType.STORAGE_SOURCE_TYPE_ESTUARY,
        pb.StorageSourceType.STORAGE_SOURCE_TYPE_FILECOIN,
    }
)
