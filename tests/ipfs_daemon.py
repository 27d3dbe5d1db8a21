"""The `ipfs_daemon` fixture: a real IPFS node (js-ipfs, installed from npm: kubo's installers download
binaries) for the session; its value is the API's URL (http://127.0.0.1:PORT).

scripts/ipfs-daemon.sh installs js-ipfs once into a cache folder (`make ipfs-install`; `make test` does
it first), then starts an offline daemon with a fresh repo in a temporary folder; the daemon
is stopped (its whole process group) when the session ends. One daemon serves every test.

When js-ipfs cannot be installed or started, tests using the fixture are skipped with the reason on a
developer's machine, and FAIL on CI (CI is set): CI skips nothing.
"""

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "ipfs-daemon.sh"
INSTALL_TIMEOUT = 900.0
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def unavailable(reason: str) -> None:
    """Skips the test, or fails it on CI."""
    if os.environ.get("CI"):
        pytest.fail(f"CI needs an IPFS daemon: {reason}", pytrace=False)
    pytest.skip(reason)


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False)


def _start(folder: Path) -> str:
    """The API URL of a daemon started in `folder` (skips or fails the test when that cannot be)."""
    try:
        install = _run("install", timeout=INSTALL_TIMEOUT)
        if install.returncode != 0:
            unavailable(f"js-ipfs could not be installed: {install.stderr.strip()[-2000:]}")
        start = _run("start", str(folder), timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        unavailable(f"`{SCRIPT.name} {' '.join(exc.cmd[1:])}` took more than {exc.timeout:g}s")
    if start.returncode != 0:
        unavailable(f"the IPFS daemon did not start: {start.stderr.strip()[-2000:]}")
    return start.stdout.strip().splitlines()[-1]


def _stop(folder: Path) -> None:
    """Stops the daemon with the script (TERM, then KILL, to its process group); kills the group itself
    if the script does not finish."""
    pid_file = folder / "daemon.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        _run("stop", str(folder), timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def ipfs_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API URL of an offline js-ipfs daemon with a fresh repo, for the whole session."""
    folder = tmp_path_factory.mktemp("ipfs-daemon")
    try:
        yield _start(folder)
    finally:
        _stop(folder)
