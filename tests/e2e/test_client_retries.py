"""Clients retry for the user, against real processes: the requester of a devstack is killed with SIGKILL
while the SDK (`Client`, `SyncClient`) or the CLI calls it, and started again (same port, data dir and
certificates) once the client has said it is waiting; the call then returns normally. With
`retry_timeout=0` / `--retry-timeout 0` the same call fails at once, and an error that retrying cannot
mend (not found, a TLS mismatch) fails at once even with retries on.

No sleeps: the requester comes back when the client reports its first retry (`on_retry`, or the CLI's
line on a terminal: its stderr is a pseudo-terminal here), or as soon as the CLI process has started.
"""

import asyncio
import os
import pty
import re
import signal
import threading

import pytest
import pytest_asyncio

from bacalhau_grpc.common.errors import NotFoundError, UnavailableError
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.devstack import Devstack
from bacalhau_grpc.sdk import Client, SyncClient
from bacalhau_grpc.sdk import sdk_types as m
from bacalhau_grpc.sdk.tls import TransportMismatchError
from tests.e2e import cli_support

pytestmark = pytest.mark.asyncio(loop_scope="module")

RETRY_TIMEOUT = 30.0
DEADLINE = 90.0  # for a call (or a CLI run) that rides through a restart
WAITING = re.compile(
    r"^waiting for the requester at 127\.0\.0\.1:\d+ \((unavailable|no answer in time): .+\); "
    r"retrying in \d+\.\ds \(up to 30s\)$"
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    async with Devstack(nodes=1, data_dir=tmp_path_factory.mktemp("retries")) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def up(stack):
    """The devstack with its requester running (a test that failed half-way may have left it down)."""
    assert stack.requester is not None
    if not stack.requester.running:
        await stack.restart(stack.requester)
    return stack


def noop_job() -> m.Job:
    return m.Job(
        spec=m.Spec(engine=m.Engine.NOOP, verifier=m.Verifier.NOOP, publisher=m.Publisher.NOOP),
        deal=m.Deal(concurrency=1),
    )


async def kill_requester(stack: Devstack) -> None:
    node = stack.requester
    assert node is not None and node.process is not None and node.running
    os.kill(node.process.pid, signal.SIGKILL)
    await node.process.wait()


class Retries:
    """An `on_retry` recording every retry (from any thread) and an event set at the first one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Exception, float]] = []
        self.first = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def __call__(self, method: str, error: Exception, delay: float) -> None:
        self.seen.append((method, error, delay))
        if threading.get_ident() == threading.main_thread().ident:
            self.first.set()
        else:
            self._loop.call_soon_threadsafe(self.first.set)


async def restart_after_first_retry(stack: Devstack, retries: Retries) -> None:
    assert stack.requester is not None
    await asyncio.wait_for(retries.first.wait(), RETRY_TIMEOUT)
    await stack.restart(stack.requester)


def client(stack: Devstack, **options) -> Client:
    return Client(stack.requester_address, tls=stack.client_tls(), key=ClientKey.generate(), **options)


# -------------------------------------------------------------------------------------------------- SDK


async def test_a_call_rides_through_a_requester_restart(up):
    retries = Retries()
    async with client(up, retry_timeout=RETRY_TIMEOUT, on_retry=retries) as sdk:
        await kill_requester(up)
        restart = asyncio.create_task(restart_after_first_retry(up, retries))
        version = await asyncio.wait_for(sdk.version(), DEADLINE)
        await restart
    assert version.git_version
    assert retries.seen, "on_retry was never called"
    method, error, _ = retries.seen[0]
    assert method == "GetVersion"
    assert isinstance(error, UnavailableError) and not isinstance(error, TransportMismatchError)
    assert f"cannot reach the requester at {up.requester_address}" in str(error)
    assert all(0 <= d <= 2.0 for _, _, d in retries.seen)


async def test_a_submission_rides_through_a_restart_and_makes_one_job(up):
    retries = Retries()
    async with client(up, retry_timeout=RETRY_TIMEOUT, on_retry=retries) as sdk:
        assert (await sdk.version()).git_version  # connected: the kill drops a live channel
        await kill_requester(up)
        restart = asyncio.create_task(restart_after_first_retry(up, retries))
        submitted = await asyncio.wait_for(sdk.submit(noop_job()), DEADLINE)
        await restart
        assert {method for method, _, _ in retries.seen} == {"SubmitJob"}
        assert (await sdk.get(submitted.id)).job.id == submitted.id
        assert [job.id async for job in sdk.list()] == [submitted.id]  # this new key's only job
        # The same submission ID and job again (a retry from another process): the same job, not a new one.
        again = await sdk.submit(noop_job(), submission_id="retried-by-hand")
        twice = await sdk.submit(noop_job(), submission_id="retried-by-hand")
        assert twice.id == again.id != submitted.id
        assert sorted([job.id async for job in sdk.list()]) == sorted([submitted.id, again.id])


async def test_the_sync_client_rides_through_a_restart(up):
    retries = Retries()
    key = ClientKey.generate()

    def submit_blocking() -> m.Job:
        options = {"tls": up.client_tls(), "key": key, "retry_timeout": RETRY_TIMEOUT, "on_retry": retries}
        with SyncClient(up.requester_address, **options) as sync:
            return sync.submit(noop_job())

    await kill_requester(up)
    restart = asyncio.create_task(restart_after_first_retry(up, retries))
    submitted = await asyncio.wait_for(asyncio.to_thread(submit_blocking), DEADLINE)
    await restart
    assert submitted.id and retries.seen
    async with client(up) as sdk:
        assert (await sdk.get(submitted.id)).job.id == submitted.id


async def test_without_retries_an_unreachable_requester_fails_at_once(up):
    retries = Retries()
    async with client(up, retry_timeout=0, on_retry=retries) as sdk:
        await kill_requester(up)
        try:
            with pytest.raises(UnavailableError, match="cannot reach the requester at"):
                await asyncio.wait_for(sdk.version(), 10)
            with pytest.raises(UnavailableError, match="cannot reach the requester at"):
                await asyncio.wait_for(sdk.submit(noop_job()), 10)
        finally:
            assert up.requester is not None
            await up.restart(up.requester)
    assert retries.seen == []


async def test_errors_retrying_cannot_mend_fail_at_once(up):
    retries = Retries()
    async with client(up, retry_timeout=RETRY_TIMEOUT, on_retry=retries) as sdk:
        with pytest.raises(NotFoundError, match="nonexistent"):
            await sdk.get("nonexistent")
    # plaintext against the requester's TLS port: a mismatch, said at once
    async with Client(
        up.requester_address, tls=False, retry_timeout=RETRY_TIMEOUT, on_retry=retries
    ) as plain:
        with pytest.raises(TransportMismatchError, match="closed the connection: it may be serving TLS"):
            await asyncio.wait_for(plain.version(), 20)
    assert retries.seen == []


# -------------------------------------------------------------------------------------------------- CLI


def cli_env(stack: Devstack) -> dict[str, str]:
    host, _, port = stack.requester_address.rpartition(":")
    return cli_support.clean_env(
        BACALHAU_API_HOST=host, BACALHAU_API_PORT=port, BACALHAU_TLS_CA_CERT=str(stack.ca_cert)
    )


class TerminalLines:
    """The lines a child writes to a pseudo-terminal (its stderr), read by a thread."""

    def __init__(self, master: int, loop: asyncio.AbstractEventLoop) -> None:
        self.lines: list[str] = []
        self.waiting = asyncio.Event()
        self._master, self._loop = master, loop
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace").rstrip("\r")
                self.lines.append(line)
                if line.startswith("waiting for the requester"):
                    self._loop.call_soon_threadsafe(self.waiting.set)
        if buffer.strip():
            self.lines.append(buffer.decode(errors="replace").rstrip("\r"))

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


async def test_the_cli_waits_for_the_requester_on_a_terminal(up):
    await kill_requester(up)
    master, slave = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            *cli_support.COMMAND,
            "version",
            env=cli_env(up),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=slave,
        )
    finally:
        os.close(slave)
    terminal = TerminalLines(master, asyncio.get_running_loop())
    try:
        await asyncio.wait_for(terminal.waiting.wait(), RETRY_TIMEOUT)
        assert up.requester is not None
        await up.restart(up.requester)
        stdout, _ = await asyncio.wait_for(process.communicate(), DEADLINE)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        terminal.join(10)
        os.close(master)
    assert process.returncode == 0, "\n".join(terminal.lines)
    assert "Server Version: " in stdout.decode()
    assert terminal.lines, "nothing said on the terminal"
    assert all(WAITING.match(line) for line in terminal.lines), "\n".join(terminal.lines)
    assert f"at {up.requester_address} (" in terminal.lines[0]


async def test_the_cli_says_nothing_extra_when_stderr_is_not_a_terminal(up):
    await kill_requester(up)
    process = await asyncio.create_subprocess_exec(
        *cli_support.COMMAND,
        "list",
        "--all",
        env=cli_env(up),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert up.requester is not None
        await up.restart(up.requester)  # the CLI has been failing to connect meanwhile
        stdout, stderr = await asyncio.wait_for(process.communicate(), DEADLINE)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    assert stderr.decode() == ""
    assert stdout.decode().splitlines()[0].split()[:2] == ["CREATED", "ID"]


async def test_the_cli_without_retries_fails_at_once_with_one_line(up):
    await kill_requester(up)
    try:
        failed = await asyncio.to_thread(
            cli_support.run_cli, "version", "--retry-timeout", "0", env=cli_env(up), timeout=30
        )
    finally:
        assert up.requester is not None
        await up.restart(up.requester)
    assert failed.returncode == 1
    (line,) = failed.stderr.splitlines()
    assert line.startswith(f"Error: cannot reach the requester at {up.requester_address}: "), line
    bad = await asyncio.to_thread(
        cli_support.run_cli, "version", "--retry-timeout", "-1", env=cli_env(up), timeout=30
    )
    assert bad.returncode == 2 and "--retry-timeout: must be 0 (no retries) or more seconds" in bad.stderr


async def test_a_command_run_again_with_its_submission_id_gets_the_same_job(up):
    env = cli_env(up)

    def run(*extra: str):
        argv = (
            "docker",
            "run",
            "--engine",
            "noop",
            "--wait=false",
            "--submission-id",
            "script-run-1",
            *extra,
        )
        return cli_support.run_cli(*argv, "image", env=env, timeout=60)

    first = await asyncio.to_thread(run)
    again = await asyncio.to_thread(run)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert cli_support.UUID.match(first.stdout.strip()), first.stdout
    assert again.stdout == first.stdout  # the same job's ID: nothing new was created
    other = await asyncio.to_thread(run, "-l", "another-job")
    assert other.returncode == 1
    (line,) = other.stderr.splitlines()
    assert line.startswith("Error: ") and "script-run-1" in line, line
    bad = await asyncio.to_thread(
        cli_support.run_cli,
        "docker",
        "run",
        "--engine",
        "noop",
        "--submission-id",
        "no spaces",
        "image",
        env=env,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("Error verifying job: ") and "submission ID" in bad.stderr, bad.stderr
