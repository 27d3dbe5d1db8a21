"""The build version: from the installed distribution, the git checkout and the platform."""

import importlib.metadata
import platform
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from bacalhau_grpc.common.model import pb, version


def test_version_comes_from_the_installed_distribution():
    installed = importlib.metadata.version("bacalhau-grpc")
    info = version.build_version_info()
    assert info.git_version == f"v{installed}"
    major, minor = installed.split(".")[:2]
    assert (info.major, info.minor) == (major, minor)


def test_version_of_this_release_is_v0_1():
    # pyproject.toml says 0.1.0.
    info = version.build_version_info()
    assert (info.git_version, info.major, info.minor) == ("v0.1.0", "0", "1")


def test_platform_is_named_as_go_names_it():
    info = version.build_version_info()
    assert info.goos == platform.system().lower()
    assert info.goarch == version.go_arch(platform.machine())
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        assert (info.goos, info.goarch) == ("linux", "amd64")


@pytest.mark.parametrize(
    ("machine", "goarch"),
    [("x86_64", "amd64"), ("AMD64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64"), ("i686", "386")],
)
def test_go_arch_names(machine, goarch):
    assert version.go_arch(machine) == goarch


@pytest.mark.parametrize(
    ("system", "goos"), [("Linux", "linux"), ("Darwin", "darwin"), ("Windows", "windows")]
)
def test_go_os_names(system, goos):
    assert version.go_os(system) == goos


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_commit_and_build_date_come_from_the_checkout():
    root = version.SOURCE_ROOT
    if not (root / ".git").exists():
        pytest.skip("not running from a git checkout")
    head = subprocess.run(
        ["git", "-C", str(root), "show", "-s", "--format=%H %ct", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    info = version.build_version_info()
    assert info.git_commit == head[0]
    assert info.HasField("build_date")
    assert info.build_date.ToDatetime(tzinfo=UTC) == datetime.fromtimestamp(int(head[1]), tz=UTC)


def test_a_folder_that_is_not_a_checkout_has_no_commit(tmp_path):
    assert version.git_head(tmp_path) == ("", None)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_broken_checkout_has_no_commit(tmp_path):
    (tmp_path / ".git").write_text("gitdir: /nowhere/at/all\n")
    assert version.git_head(tmp_path) == ("", None)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_an_empty_repository_has_no_commit(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert version.git_head(tmp_path) == ("", None)


def test_a_missing_git_program_gives_no_commit():
    assert version.git_head(version.SOURCE_ROOT, git="/nonexistent/bin/git") == ("", None)


def test_the_answer_is_cached_but_each_caller_gets_its_own_copy():
    first = version.build_version_info()
    first.git_version = "changed by a caller"
    second = version.build_version_info()
    assert second.git_version != "changed by a caller"
    assert second == version.build_version_info()
    assert isinstance(second, pb.BuildVersionInfo)
