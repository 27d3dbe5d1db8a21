"""Progress of downloads and uploads against a real devstack: `get` (and `wasm run FILE.wasm`'s context
upload) with stderr on a pseudo-terminal draw a bar with the total size, the rate and the time left; with
stderr not a terminal they print nothing extra. The SDK's `on_progress(done, total)` callback counts up to
the files' total."""

import asyncio
import fcntl
import os
import pty
import re
import struct
import termios
import threading
from pathlib import Path

import pytest
import pytest_asyncio

from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.sdk import Client
from bacalhau_grpc.sdk import sdk_types as m
from tests.e2e import cli_support

pytestmark = pytest.mark.asyncio(loop_scope="module")

# What the noop executor writes to stdout: large enough for several chunks of a download, within what one
# command-line argument may hold.
STDOUT_BYTES = 100_000
DEADLINE = 60.0
HELLO_WASM = Path(__file__).resolve().parents[1] / "wasm" / "hello.wasm"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    async with Devstack(
        nodes=1,
        data_dir=tmp_path_factory.mktemp("progress"),
        compute_flags=["--noop-stdout", "x" * STDOUT_BYTES],
    ) as running:
        yield running


def cli_env(stack: Devstack) -> dict[str, str]:
    host, _, port = stack.requester_address.rpartition(":")
    return cli_support.clean_env(
        BACALHAU_API_HOST=host, BACALHAU_API_PORT=port, BACALHAU_TLS_CA_CERT=str(stack.ca_cert), COLUMNS="120"
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def job_id(stack, tmp_path_factory) -> str:
    key = ClientKey.load_or_create(tmp_path_factory.mktemp("submitter"))
    async with Client(stack.requester_address, key=key, ca_cert=stack.ca_cert) as client:
        job = await client.submit(
            m.Job(
                spec=m.Spec(engine=m.Engine.NOOP, verifier=m.Verifier.NOOP, publisher=m.Publisher.LOCAL),
                deal=m.Deal(concurrency=1),
            )
        )
        await client.wait(job.id, timeout=DEADLINE)
    return job.id


async def run_on_terminal(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """The CLI with stderr on a pseudo-terminal: (exit code, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 rows, 120 columns
    shown: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            shown.append(chunk)

    try:
        process = await asyncio.create_subprocess_exec(
            *cli_support.COMMAND,
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=slave,
        )
    finally:
        os.close(slave)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), DEADLINE)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await asyncio.to_thread(reader.join, 10)
        os.close(master)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), b"".join(shown).decode(errors="replace")


def size_text(size: int) -> str:
    """The size as tqdm writes it (unit_scale, unit_divisor 1024): 100001 bytes are 97.7kB."""
    return f"{size / 1024:.1f}kB"


def downloaded_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in (folder / "raw").rglob("*") if path.is_file())


async def test_get_on_a_terminal_shows_a_bar_with_the_total_the_rate_and_the_time_left(
    stack, job_id, tmp_path
):
    code, stdout, terminal = await run_on_terminal(
        "get", job_id, "--output-dir", str(tmp_path / "out"), env=cli_env(stack)
    )
    assert code == 0, terminal
    assert stdout.strip() == str(tmp_path / "out")
    total = downloaded_bytes(tmp_path / "out")
    assert total > STDOUT_BYTES
    last = terminal.replace("\r\n", "\n").split("\r")[-1]  # the bar as it was left, complete
    bar = re.search(
        r"Downloading: 100%\|.*\| (\S+)/(\S+) \[(\d\d:\d\d)<(\d\d:\d\d), +([\d.]+[kMG]?B/s)\]", last
    )
    assert bar, repr(terminal)
    assert bar.group(1) == bar.group(2) == size_text(total)
    assert f"Fetching results of job '{job_id}'..." in terminal
    assert f"Results for job '{job_id}' have been written to..." in terminal


async def test_get_without_a_terminal_prints_no_bar(stack, job_id, tmp_path):
    env = cli_env(stack)
    done = await asyncio.to_thread(
        cli_support.run_cli, "get", job_id, "--output-dir", str(tmp_path / "out"), env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"Fetching results of job '{job_id}'...",
        f"Results for job '{job_id}' have been written to...",
    ]
    assert "\r" not in done.stderr and "Downloading" not in done.stderr


async def test_the_sdk_reports_increasing_done_bytes_up_to_the_files_total(stack, job_id, tmp_path):
    calls: list[tuple[int, int]] = []
    key = ClientKey.load_or_create(tmp_path / "key")
    async with Client(stack.requester_address, key=key, ca_cert=stack.ca_cert) as client:
        folder = await client.download(job_id, tmp_path / "out", on_progress=lambda *call: calls.append(call))
    total = downloaded_bytes(folder)
    assert len(calls) >= 2
    assert calls[0] == (0, total)
    assert calls[-1] == (total, total)
    assert {t for _, t in calls} == {total}
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(set(done)) == len(done)  # strictly increasing


async def test_a_context_upload_on_a_terminal_shows_a_bar_and_none_without(stack, tmp_path):
    env = cli_env(stack)
    _, stdout, terminal = await run_on_terminal("wasm", "run", str(HELLO_WASM), env=env)
    assert "Job successfully submitted" in stdout, stdout + terminal
    last = terminal.replace("\r\n", "\n").split("\r")[-1]
    assert re.search(
        r"Uploading context: 100%\|.*\| \S+B/\S+B \[\d\d:\d\d<\d\d:\d\d, +[\d.]+[kMG]?B/s\]", last
    ), terminal
    plain = await asyncio.to_thread(cli_support.run_cli, "wasm", "run", str(HELLO_WASM), env=env)
    assert "Job successfully submitted" in plain.stdout, plain.stdout + plain.stderr
    assert "Uploading context" not in plain.stderr and "\r" not in plain.stderr
