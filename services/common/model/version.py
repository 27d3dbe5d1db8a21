"""The running build's version (Go `pkg/version.Get()` filling `model.BuildVersionInfo`).

Go takes the version from a linker flag and the commit and its time from the binary's VCS stamp. Here
the version comes from the installed `bacalhau-grpc` distribution, and the commit and commit time
from `git` in the source checkout, when the code runs from one. Without git or a checkout the commit
is "" and the build date unset: asking for the version never fails.
"""

import functools
import importlib.metadata
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from bacalhau_grpc.common.model import pb

DISTRIBUTION = "bacalhau-grpc"
# services/common/model/version.py -> the checkout's top folder.
SOURCE_ROOT = Path(__file__).resolve().parents[3]

_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "x86": "386",
    "armv6l": "arm",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def go_os(system: str) -> str:
    """Go's GOOS for a `platform.system()` value: "Linux" -> "linux", "Darwin" -> "darwin"."""
    return system.lower()


def go_arch(machine: str) -> str:
    """Go's GOARCH for a `platform.machine()` value: "x86_64" -> "amd64", "aarch64" -> "arm64"."""
    lowered = machine.lower()
    return _GOARCH.get(lowered, lowered)


def git_head(root: Path, git: str = "git") -> tuple[str, datetime | None]:
    """The commit checked out in `root` and its commit time; ("", None) when there is none to read.

    Only a folder that holds its own `.git` is asked, so an installed copy never reports the commit of
    some unrelated repository around it. Like Go's VCS stamp, the time is the committer time.
    """
    if not (root / ".git").exists():
        return "", None
    try:
        done = subprocess.run(
            [git, "-C", str(root), "show", "-s", "--format=%H %ct", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "", None
    match = re.fullmatch(r"([0-9a-f]{40,64}) ([0-9]+)", done.stdout.strip())
    if done.returncode != 0 or match is None:
        return "", None
    return match.group(1), datetime.fromtimestamp(int(match.group(2)), tz=UTC)


def _installed_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"  # Go's fallback GITVERSION is v0.0.0-xxxxxxx


@functools.cache
def _cached_build_version_info() -> pb.BuildVersionInfo:
    version = _installed_version()
    numbers = re.match(r"v?([0-9]+)\.([0-9]+)", version)
    commit, committed_at = git_head(SOURCE_ROOT)
    info = pb.BuildVersionInfo(
        major=numbers.group(1) if numbers else "",
        minor=numbers.group(2) if numbers else "",
        git_version=version if version.startswith("v") else f"v{version}",
        git_commit=commit,
        goos=go_os(platform.system()),
        goarch=go_arch(platform.machine()),
    )
    if committed_at is not None:
        info.build_date.FromDatetime(committed_at)
    return info


def build_version_info() -> pb.BuildVersionInfo:
    """This build's version: "v0.1.0", major "0", minor "1", commit, commit time, GOOS and GOARCH.

    Worked out once per process (git runs at most once); each call returns its own copy, so a caller
    that changes the message does not change what later callers see.
    """
    info = pb.BuildVersionInfo()
    info.CopyFrom(_cached_build_version_info())
    return info
