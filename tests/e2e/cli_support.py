"""Running the real `bacalhau-grpc` CLI in subprocesses: its command, a clean environment with a temporary
key directory, a child's output read line by line with deadlines, and a devstack of node processes; an
SDK client with the CLI's key, and a WASM job that runs until it is cancelled."""

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bacalhau_grpc.common.content.archive import make_tar_gz
from bacalhau_grpc.common.signing import ClientKey
from bacalhau_grpc.sdk import Client
from bacalhau_grpc.sdk import sdk_types as m

CLI = Path(sys.executable).parent / "bacalhau-grpc"
COMMAND = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "bacalhau_grpc.cli.main"]
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STARTUP = 90.0  # seconds: five Python processes starting at once on a 2-core machine
STDOUT_TEXT = "hello from the devstack"
WASM = Path(__file__).resolve().parent.parent / "wasm"

# The CLI's key directory ($BACALHAU_DIR) in every subprocess: a temporary one, never the user's (set by
# the `key_dir` fixture of tests/e2e/conftest.py).
KEY_DIR: Path | None = None


def clean_env(**extra: str) -> dict[str, str]:
    assert KEY_DIR is not None, "the key_dir fixture sets the CLI's key directory"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACALHAU_")}
    env.update(BACALHAU_DIR=str(KEY_DIR), PYTHONUNBUFFERED="1", **extra)
    return env


class Lines:
    """A child's output, read line by line by a thread, so the test can wait for a line with a deadline."""

    def __init__(self, stream) -> None:
        self.seen: list[str] = []
        self.closed = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        for line in self.seen:
            if match := regex.search(line):
                return match
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no line matching {pattern!r} within {timeout} s; output:\n" + self.text()
                )
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.closed = True
                raise AssertionError(f"the output ended without {pattern!r}; output:\n" + self.text())
            self.seen.append(line)
            if match := regex.search(line):
                return match

    def rest(self, timeout: float) -> str:
        """Everything until the stream closes (the process exited)."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                continue
            if line is None:
                self.closed = True
                break
            self.seen.append(line)
        return self.text()

    def text(self) -> str:
        return "\n".join(self.seen)


def gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie nobody waits for)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return status.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def run_cli(*args: str, env: dict[str, str], input: str | None = None, timeout: float = 60):
    return subprocess.run(
        [*COMMAND, *args], env=env, input=input, capture_output=True, text=True, timeout=timeout, check=False
    )


# --------------------------------------------------------------------------------------------- devstack


# The table `devstack` prints once it is ready: kind, node ID, address, pid.
NODE_ROW = re.compile(r"^(verifier|requester|compute)\s+(\S+)\s+(\S+)\s+pid (\d+)", re.M)
# Its web dashboard's line: the URL and the pid.
DASHBOARD_LINE = re.compile(r"^Dashboard: (http://\S+/) \(pid (\d+);", re.M)
DEFAULT_ARGS = ("--nodes", "3", "--bad-actors", "1", "--noop-stdout", STDOUT_TEXT)


class RunningDevstack:
    """`bacalhau-grpc devstack ARGS` in a subprocess (3 compute nodes, one a bad actor, by default), once it
    is ready: its API address, `env` for the CLI (with BACALHAU_TLS_CA_CERT unless it runs --insecure), and
    its nodes as printed. With TLS: `ca_cert`, the operator's `operator_cert` / `operator_key` and the
    requester's `node_address` (its node port).

    Without its web dashboard (--no-dashboard: one process less) unless `dashboard`; with it,
    `dashboard_url` and `dashboard_pid` as printed."""

    def __init__(self, tmp: Path, args: tuple[str, ...] = DEFAULT_ARGS, *, dashboard: bool = False) -> None:
        self.data_dir = tmp / "devstack"
        self.process = subprocess.Popen(
            [
                *COMMAND,
                "devstack",
                *args,
                *(() if dashboard else ("--no-dashboard",)),
                "--data-dir",
                str(self.data_dir),
                "--startup-timeout",
                str(STARTUP),
            ],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = Lines(self.process.stdout)
        try:
            match = self.output.wait_for(
                r"export BACALHAU_API_HOST=(\S+) BACALHAU_API_PORT=(\d+)(?: BACALHAU_TLS_CA_CERT=(\S+))?",
                STARTUP + 10,
            )
            self.output.wait_for("Devstack is ready!", 5)
        except BaseException:
            self.process.kill()
            raise
        self.host, self.port = match.group(1), match.group(2)
        text = self.output.text()
        # With TLS: the CA (as the export line gives it), the operator's certificate, the node port.
        self.ca_cert = match.group(3)
        operator = re.search(r"grpcurl -cacert \S+ -cert (\S+) -key (\S+) (\S+) list", text)
        found = operator.groups() if operator else (None, None, None)
        self.operator_cert, self.operator_key, self.node_address = found
        tls = {"BACALHAU_TLS_CA_CERT": self.ca_cert} if self.ca_cert else {}
        rows = NODE_ROW.findall(self.output.text())
        self.pids = [int(row[3]) for row in rows]
        shown = DASHBOARD_LINE.search(text)
        self.dashboard_url = shown.group(1) if shown else None
        self.dashboard_pid = int(shown.group(2)) if shown else None
        # compute name ("compute-0") -> (node ID, address, pid), as printed
        self.computes = {
            f"compute-{i}": tuple(row[1:]) for i, row in enumerate(r for r in rows if r[0] == "compute")
        }
        self.env = clean_env(BACALHAU_API_HOST=self.host, BACALHAU_API_PORT=self.port, **tls)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def grpcurl_tls(self, *, operator: bool = False) -> list[str]:
        """grpcurl's TLS flags for this devstack, as it printed them: the CA (the client API port) and, for
        an operator on the node port, the client certificate; `-plaintext` when it runs --insecure."""
        if not self.ca_cert:
            return ["-plaintext"]
        flags = ["-cacert", self.ca_cert]
        if operator:
            assert self.operator_cert and self.operator_key, self.output.text()
            flags += ["-cert", self.operator_cert, "-key", self.operator_key]
        return flags

    def all_pids(self) -> set[int]:
        """Every node process it started, restarted ones included (", pid N" at the end of a line)."""
        restarted = re.findall(r", pid (\d+)$", self.output.text(), re.M)
        dashboard = {self.dashboard_pid} if self.dashboard_pid else set()
        return set(self.pids) | dashboard | {int(pid) for pid in restarted}

    def stop(self, sig: int = signal.SIGINT) -> str:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return self.output.rest(5)

    def stop_all(self) -> None:
        """Stop it, and kill any node process that outlived it."""
        try:
            self.stop()
        finally:
            for pid in self.all_pids():
                if not gone(pid):
                    os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------- submitting commands

# The `--wait` printout: the ID, and one line per lifecycle step ("\t    Node accepted the job ... done ✅").
JOB_ID = re.compile(r"Job ID: ([a-f0-9-]{36})")
STEP = re.compile(r"^\t *(\S.*?) \.\.\. (done ✅|failed ❌)", re.M)


def job_id_of(text: str) -> str:
    match = JOB_ID.search(text)
    assert match, f"no job ID in:\n{text}"
    return match.group(1)


def steps(text: str) -> list[str]:
    """The lifecycle steps a `--wait` printout shows, in order (failures end with " !")."""
    return [name if result.startswith("done") else f"{name} !" for name, result in STEP.findall(text)]


def event_names(env: dict[str, str], job_id: str) -> list[str]:
    """The job's events (names, in order), read with the SDK from the requester `env` points at."""
    from bacalhau_grpc.common.model import enums
    from bacalhau_grpc.sdk import SyncClient, api_address, client_tls

    with SyncClient(api_address(None, None, env), tls=client_tls(environ=env) or False) as client:
        return [enums.JOB_EVENT_TYPE.name(int(event.event_name)) for event in client.events(job_id)]


# ------------------------------------------------------------------------------------------ certificates


class ClusterCerts:
    """A cluster CA made in `folder` (`bacalhau_grpc.common.certs`, as `bacalhau-grpc certs` makes them),
    the certificates it issues as `serve`'s flags, and an operator's client certificate."""

    def __init__(self, folder: Path) -> None:
        from bacalhau_grpc.common import certs

        self.folder = folder
        certs.create_ca(folder)
        self.ca = folder / certs.CA_CERT_FILE
        operator = certs.issue(folder, role="client", node_id="operator")
        self.operator_cert, self.operator_key = operator.cert, operator.key

    def serve_flags(self, role: str, node_id: str, **issue) -> list[str]:
        """`--tls-cert --tls-key --tls-ca` of a new certificate for `role`/`node_id` (`issue`: dns, ips)."""
        from bacalhau_grpc.common import certs

        issued = certs.issue(self.folder, role=role, node_id=node_id, **issue)
        return ["--tls-cert", str(issued.cert), "--tls-key", str(issued.key), "--tls-ca", str(self.ca)]

    def credentials(self, *, operator: bool = True):
        """gRPC channel credentials: the CA and, unless `operator` is False, the operator's certificate."""
        import grpc

        if not operator:
            return grpc.ssl_channel_credentials(self.ca.read_bytes())
        return grpc.ssl_channel_credentials(
            self.ca.read_bytes(), self.operator_key.read_bytes(), self.operator_cert.read_bytes()
        )


def sdk(devstack) -> Client:
    """An SDK client of the devstack with the CLI's key ($BACALHAU_DIR, which a devstack's dashboard signs
    with too)."""
    assert KEY_DIR is not None, "the key_dir fixture sets the CLI's key directory"
    key = ClientKey.load_or_create(KEY_DIR)
    return Client(f"{devstack.host}:{devstack.port}", key=key, ca_cert=devstack.ca_cert)


def spinning() -> m.Job:
    """A WASM job that prints "spinning" and then runs until it is cancelled (or its 120 s timeout)."""
    return m.Job(
        spec=m.Spec(
            engine=m.Engine.WASM,
            verifier=m.Verifier.NOOP,
            publisher=m.Publisher.NOOP,
            timeout=120,
            wasm=m.JobSpecWasm(entry_point="_start"),
        ),
        deal=m.Deal(concurrency=1),
    )


def start_spinning(devstack) -> str:
    """Submits the spinning WASM job and returns its ID once a node accepted it."""

    async def start() -> str:
        async with sdk(devstack) as client:
            module = make_tar_gz({"spin.wasm": (WASM / "spin.wasm").read_bytes()})
            job = await client.submit(spinning(), context=module)
            async for event in client.events(job.id, follow=True):
                if event.event_name == m.JobEventType.BID_ACCEPTED:
                    return job.id
            raise AssertionError("the job ended before it ran")

    return asyncio.run(start())
