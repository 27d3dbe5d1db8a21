"""The devstack supervisor: a verifier, a requester and N compute nodes as separate local processes,
started, watched, restarted and stopped (the `devstack` command is `cli.devstack`; tests, `make demo`
and the benchmarks use it as a library).

Each node is `python -m bacalhau_grpc.cli.main serve --node-type ... --port 0` with its output in
`<data-dir>/logs/<name>.log`; its address is read from its "listening on" line, so no port is fixed.
The last `bad_actors` compute nodes propose wrong results (`--bad-actor`).

Secure by default: the devstack makes a CA in `<data-dir>/tls/` (kept when the folder is used again), chooses
every node's ID up front and issues it a certificate (`<role>-<node-id>.pem`, for localhost and 127.0.0.1),
plus an operator's `client-operator.pem` for grpcurl; every node serves TLS (mutual TLS between the
services), the requester its client API on one port and its node protocol on another (where the compute
nodes register). `insecure=True` (`devstack --insecure`) runs everything in plaintext, as `serve
--insecure`.

As a library (tests, `make demo`, benchmarks):

    async with Devstack(nodes=3, compute_flags=["--noop-stdout", "hi"]) as stack:
        async with Client(stack.requester_address, tls=stack.client_tls()) as client: ...
        channel = open_channel(stack.requester_address, credentials=stack.channel_credentials())
        ...

With `dashboard=True` (on in `bacalhau-grpc devstack`, off by default here) it also runs the web dashboard
(`bacalhau-grpc dashboard`, `Devstack.dashboard`, its log `<data-dir>/logs/dashboard.log`) on a free port
of 127.0.0.1 (or `dashboard_port`), a client of the requester: with TLS on the requester's node port as the
operator (mutual TLS), in plaintext on its one port. It signs with the CLI's key of the devstack's
environment ($BACALHAU_DIR, else ~/.bacalhau-grpc: `dashboard_key_dir`), so the jobs the user creates with
the CLI are its own and, with `dashboard_allow_cancel` (the default), it may cancel them.
`dashboard_url` is its address once `/healthz` answers 200 (the requester answers it).

`restart(node)` starts a node that exited again, on its address with its node ID and data dir
(`devstack --restart-on-crash` does so whenever one dies). `stop()` (or leaving the `async with`) stops
the dashboard, then the compute nodes, then the requester, then the verifier: SIGTERM, then SIGKILL after a
grace period. Every child also stops by itself when the devstack process goes away, even if it is killed
(each watches a pipe whose only writer is the devstack).
"""

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc

from bacalhau_grpc.common import certs, signing
from bacalhau_grpc.common.channels import call, open_channel
from bacalhau_grpc.common.errors import BacalhauError
from bacalhau_grpc.devstack.nodes import (
    DASHBOARD,
    DASHBOARD_LISTENING,
    DevstackError,
    Node,
    healthz,
    listening_line,
    logged_registration,
    metrics_line,
    node_id_for,
    node_protocol_line,
    registration,
    with_flag,
)
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2 as cpb
from bacalhau_grpc.pb.compute.v1 import compute_service_pb2_grpc as cgrpc
from bacalhau_grpc.sdk.tls import ClientTls

TLS_DIR = "tls"
OPERATOR = "operator"  # the operator's client certificate: client-operator.pem
STARTUP_TIMEOUT = 60.0
STOP_GRACE = 10.0
_POLL = 0.02  # seconds between looks at a starting child's log
# The settings the devstack decides for each node: neither its flags nor BACALHAU_<SETTING> pass on.
PER_NODE_SETTINGS = (
    "node_id",
    "host",
    "port",
    "data_dir",
    "requester_address",
    "verifier_address",
    "advertise_address",
    "bad_actor",
    "node_port",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "insecure",
    "metrics_port",
    "log_format",
)


class Devstack:
    """Starts and stops a local network of separate node processes."""

    def __init__(
        self,
        nodes: int = 3,
        bad_actors: int = 0,
        data_dir: str | Path | None = None,
        compute_flags: Sequence[str] = (),
        requester_flags: Sequence[str] = (),
        verifier_flags: Sequence[str] = (),
        *,
        startup_timeout: float = STARTUP_TIMEOUT,
        stop_grace: float = STOP_GRACE,
        log_level: str = "INFO",
        env: dict[str, str] | None = None,
        requester_env: dict[str, str] | None = None,
        python: str = sys.executable,
        insecure: bool = False,
        metrics: bool = False,
        log_format: str | None = None,
        dashboard: bool = False,
        dashboard_port: int = 0,
        dashboard_allow_cancel: bool = True,
    ) -> None:
        self.nodes = nodes
        self.bad_actors = bad_actors
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.compute_flags = list(compute_flags)
        self.requester_flags = list(requester_flags)
        self.verifier_flags = list(verifier_flags)
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.log_level = log_level
        self.env = env
        # Extra environment of the requester's process only (e.g. test failpoints): `Node.env`.
        self.requester_env = dict(requester_env or {})
        self.python = python
        self.insecure = insecure
        # Every node serves Prometheus metrics on a free port of its own (`Node.metrics_address`).
        self.metrics = metrics
        # Every node's log format (serve --log-format: text or json); None: BACALHAU_LOG_FORMAT of the
        # devstack's environment, else serve's default (text).
        self.log_format = log_format
        # The web dashboard as one more child process (`dashboard_url`), on `dashboard_port` (0: a free one).
        self.dashboard_enabled = dashboard
        self.dashboard_port = dashboard_port
        self.dashboard_allow_cancel = dashboard_allow_cancel
        # True when the devstack made its data dir (a temporary one): stop() then removes it.
        self.remove_data_dir = False
        self.verifier: Node | None = None
        self.requester: Node | None = None
        self.computes: list[Node] = []
        self.dashboard: Node | None = None
        self._pipe_write: int | None = None
        self._pipe_read: int | None = None
        self._stopped = False

    # -------------------------------------------------------------------------------------- addresses

    @property
    def requester_address(self) -> str:
        return self._started(self.requester).address

    @property
    def requester_node_address(self) -> str:
        """Where compute nodes (and operators with a client certificate) reach the requester: with TLS its
        node port (mutual TLS), else its one port."""
        node = self._started(self.requester)
        return node.node_address or node.address

    @property
    def verifier_address(self) -> str:
        return self._started(self.verifier).address

    @property
    def dashboard_url(self) -> str:
        """The web dashboard's URL (`http://127.0.0.1:PORT/`) of a devstack started with `dashboard=True`."""
        if not self.dashboard_enabled:
            raise DevstackError("the devstack runs no dashboard (Devstack(dashboard=True) starts one)")
        return f"http://{self._started(self.dashboard).address}/"

    @property
    def dashboard_key_dir(self) -> Path:
        """The CLI key directory the dashboard signs with: the devstack environment's $BACALHAU_DIR, else
        ~/.bacalhau-grpc (the one `bacalhau-grpc create` uses in the same environment)."""
        return signing.default_directory(os.environ if self.env is None else self.env).resolve()

    # ------------------------------------------------------------------------------------------ TLS

    @property
    def secure(self) -> bool:
        return not self.insecure

    @property
    def tls_dir(self) -> Path:
        """Where the CA and the certificates are (`<data-dir>/tls`)."""
        if self.data_dir is None:
            raise DevstackError("the devstack is not started")
        return self.data_dir.resolve() / TLS_DIR

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / certs.CA_CERT_FILE

    @property
    def operator_cert(self) -> Path:
        return self.tls_dir / certs.cert_file_names("client", OPERATOR)[0]

    @property
    def operator_key(self) -> Path:
        return self.tls_dir / certs.cert_file_names("client", OPERATOR)[1]

    def client_tls(self, *, operator: bool = False) -> ClientTls | bool:
        """The SDK `Client`'s `tls` for this devstack: the CA (and, for an operator on the node port, the
        operator's client certificate), or False when it runs in plaintext."""
        if self.insecure:
            return False
        if not operator:
            return ClientTls(ca=self.ca_cert.read_bytes(), ca_source=f"the CA certificate {self.ca_cert}")
        return ClientTls(
            ca=self.ca_cert.read_bytes(),
            cert=self.operator_cert.read_bytes(),
            key=self.operator_key.read_bytes(),
            ca_source=f"the CA certificate {self.ca_cert}",
        )

    def channel_credentials(self, *, operator: bool = False) -> grpc.ChannelCredentials | None:
        """Credentials for a gRPC channel to its services (None: plaintext). Without `operator`, only the
        CA: for the requester's client API. With it, the operator's client certificate: for the node port,
        the compute nodes' GetNodeInfo and the verifier's GetVerifierInfo (mutual TLS)."""
        tls = self.client_tls(operator=operator)
        return tls.credentials() if isinstance(tls, ClientTls) else None

    @property
    def compute_addresses(self) -> list[str]:
        return [node.address for node in self.computes]

    @property
    def requester_port(self) -> int:
        return int(self.requester_address.rpartition(":")[2])

    @property
    def all_nodes(self) -> list[Node]:
        """The network's nodes: the verifier, the requester and the compute nodes (not the dashboard)."""
        return [n for n in (self.verifier, self.requester, *self.computes) if n is not None]

    @property
    def processes(self) -> list[Node]:
        """Every child process: the network's nodes and, when it runs, the dashboard."""
        return [*self.all_nodes, *((self.dashboard,) if self.dashboard is not None else ())]

    def _started(self, node: Node | None) -> Node:
        if node is None or not node.address:
            raise DevstackError("the devstack is not started")
        return node

    # -------------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> "Devstack":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(
        self,
        nodes: int | None = None,
        bad_actors: int | None = None,
        data_dir: str | Path | None = None,
        compute_flags: Sequence[str] | None = None,
    ) -> "Devstack":
        """Start the verifier, then the requester, then the compute nodes; return once all of them
        listen and every compute node has registered with the requester.

        Arguments given here override the constructor's."""
        if nodes is not None:
            self.nodes = nodes
        if bad_actors is not None:
            self.bad_actors = bad_actors
        if data_dir is not None:
            self.data_dir = Path(data_dir)
        if compute_flags is not None:
            self.compute_flags = list(compute_flags)
        if self.nodes < 1:
            raise DevstackError(f"a devstack needs at least one compute node, got --nodes {self.nodes}")
        if not 0 <= self.bad_actors < self.nodes:
            raise DevstackError(
                f"--bad-actors must be at least 0 and less than --nodes ({self.nodes}), got {self.bad_actors}"
            )
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="bacalhau-devstack-"))
            self.remove_data_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        self._pipe_read, self._pipe_write = os.pipe()
        os.set_inheritable(self._pipe_read, True)
        try:
            if self.secure:
                await asyncio.to_thread(self._make_ca)
            self.verifier = await self._new_node("verifier", "verifier", [*self.verifier_flags])
            await self._launch_and_wait([self.verifier])
            requester_dir = self.data_dir / "requester"
            self.requester = await self._new_node(
                "requester",
                "requester",
                [
                    "--data-dir",
                    str(requester_dir),
                    "--verifier-address",
                    self.verifier.address,
                    *(() if self.insecure else ("--node-port", "0")),
                    *self.requester_flags,
                ],
                data_dir=requester_dir,
            )
            self.requester.env = dict(self.requester_env)
            await self._launch_and_wait([self.requester])
            self.computes = []
            for i in range(self.nodes):
                bad = i >= self.nodes - self.bad_actors
                compute_dir = self.data_dir / f"compute-{i}"
                args = ["--data-dir", str(compute_dir), "--requester-address"]
                args += [self.requester_node_address, *self.compute_flags]
                if bad:
                    args.append("--bad-actor")
                node = await self._new_node(f"compute-{i}", "compute", args, data_dir=compute_dir)
                node.bad_actor = bad
                self.computes.append(node)
            # The dashboard (a client of the requester) starts along with the compute nodes.
            if self.dashboard_enabled:
                self.dashboard = self._new_dashboard()
            await self._launch_and_wait([*self.computes, *((self.dashboard,) if self.dashboard else ())])
            await self._wait_until_registered(self.computes)
        except BaseException:
            await self.stop()
            raise
        return self

    async def restart(self, node: Node) -> None:
        """Start a node that exited again with its command line, on the address it had (the others know it
        by that), with its node ID and data dir; return once it listens and, for a compute node, has
        registered with the requester."""
        if node.running:
            raise DevstackError(f"{node.name} is still running (pid {node.pid})")
        port = node.address.rpartition(":")[2]
        if node.node_type == DASHBOARD:
            node.args = with_flag(node.args, "--port", port)
            node.stopping = False
            await self._launch_and_wait([node])
            return
        node.args = with_flag(with_flag(node.args, "--port", port), "--node-id", node.node_id)
        if node.node_address and node.node_address != node.address:
            node.args = with_flag(node.args, "--node-port", node.node_address.rpartition(":")[2])
        node.stopping = False
        await self._launch_and_wait([node])
        if node.node_type == "compute":
            await self._wait_until_registered([node])

    async def _new_node(
        self, name: str, node_type: str, args: list[str], *, data_dir: Path | None = None
    ) -> Node:
        """A node to start: its ID chosen here (the one its data dir keeps, when there is one) and, with
        TLS, its certificate issued for that ID; plaintext nodes get --insecure."""
        assert self.data_dir is not None
        node_id = node_id_for(node_type, data_dir)
        transport = ["--insecure"]
        if self.secure:
            issued = await asyncio.to_thread(
                certs.issue, self.tls_dir, role=node_type, node_id=node_id, out_dir=self.tls_dir
            )
            transport = ["--tls-cert", str(issued.cert), "--tls-key", str(issued.key)]
            transport += ["--tls-ca", str(self.ca_cert)]
        command = [
            *("-m", "bacalhau_grpc.cli.main", "serve", "--node-type", node_type),
            *("--host", "127.0.0.1", "--port", "0", "--log-level", self.log_level),
            *("--stop-when-fd-closes", str(self._pipe_read)),
            *("--node-id", node_id),
            *(("--metrics-port", "0") if self.metrics else ()),
            *(("--log-format", log_format) if (log_format := self._log_format()) else ()),
            *transport,
            *args,
        ]
        return Node(name, node_type, command, self.data_dir / "logs" / f"{name}.log", node_id=node_id)

    def _new_dashboard(self) -> Node:
        """`bacalhau-grpc dashboard` of this devstack's requester: with TLS on its node port as the operator,
        with the CLI's key of the devstack's environment; it stops by itself when the devstack goes away."""
        assert self.data_dir is not None and self._pipe_read is not None
        if self.secure:
            api = self.requester_node_address
            transport = ["--ca-cert", str(self.ca_cert), "--client-cert", str(self.operator_cert)]
            transport += ["--client-key", str(self.operator_key)]
        else:
            api = self.requester_address
            transport = ["--tls=false"]
        host, _, port = api.rpartition(":")
        command = [
            *("-m", "bacalhau_grpc.cli.main", DASHBOARD, "--stop-when-fd-closes", str(self._pipe_read)),
            *("--host", "127.0.0.1", "--port", str(self.dashboard_port)),
            *("--api-host", host, "--api-port", port, *transport),
            *(("--allow-cancel",) if self.dashboard_allow_cancel else ()),
        ]
        node = Node(DASHBOARD, DASHBOARD, command, self.data_dir / "logs" / f"{DASHBOARD}.log")
        # The CLI's key directory, resolved now: a restarted dashboard keeps signing as the same client.
        node.env = {signing.DIR_ENV: str(self.dashboard_key_dir)}
        return node

    def _log_format(self) -> str:
        environ = os.environ if self.env is None else self.env
        return self.log_format or environ.get("BACALHAU_LOG_FORMAT", "")

    def _make_ca(self) -> None:
        """The devstack's CA (kept when its folder has one: the certificates it issued stay good) and the
        operator's client certificate."""
        if not (self.ca_cert.exists() and (self.tls_dir / certs.CA_KEY_FILE).exists()):
            certs.create_ca(self.tls_dir, common_name="bacalhau-grpc devstack CA", force=True)
        certs.issue(self.tls_dir, role="client", node_id=OPERATOR)

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        # Settings the devstack decides per node must not leak in from the caller's environment.
        for name in PER_NODE_SETTINGS:
            env.pop(f"BACALHAU_{name.upper()}", None)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def _launch_and_wait(self, nodes: list[Node]) -> None:
        env = self._child_env()
        assert self._pipe_read is not None
        for node in nodes:
            with open(node.log_path, "ab") as log:
                node.log_offset = log.tell()
                node.process = await asyncio.create_subprocess_exec(
                    self.python,
                    *node.args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env={**env, **node.env} if node.env else env,
                    pass_fds=(self._pipe_read,),
                    start_new_session=True,  # Ctrl+C in a terminal reaches the devstack only
                )
        await asyncio.gather(
            *(
                self._wait_dashboard(node) if node.node_type == DASHBOARD else self._wait_listening(node)
                for node in nodes
            )
        )

    async def _wait_dashboard(self, node: Node) -> None:
        """Until the startup deadline: the dashboard's URL in its log, then its /healthz answering 200 (it
        reaches the requester)."""

        async def ready() -> str | None:
            match = DASHBOARD_LISTENING.search(node.current_log())
            if match is None:
                return "it did not print its URL"
            node.address = match.group(2)
            status, problem = await asyncio.to_thread(healthz, match.group(1))
            return None if status == 200 else problem

        await self._poll(node, ready)

    async def _wait_listening(self, node: Node) -> None:
        """Until the startup deadline: the node's "listening on" line in its log (and its node protocol and
        metrics lines when it has them)."""

        async def ready() -> str | None:
            match = listening_line(node)
            node_line = node_protocol_line(node) if node.node_type == "requester" and self.secure else match
            metrics_match = metrics_line(node) if self.metrics else match
            if match is None or node_line is None or metrics_match is None:
                return "it did not print where it listens"
            node.node_id, node.address = match.group(2), match.group(3)
            if self.metrics:
                node.metrics_address = metrics_match.group(3)
            node.node_address = node_line.group(node_line.lastindex or 0)
            return None

        await self._poll(node, ready)

    async def _poll(self, node: Node, ready: Callable[[], Awaitable[str | None]]) -> None:
        """Calls `ready()` until it answers None, every _POLL seconds (at once when the node exits); fails
        when the node exits first or the startup deadline passes, naming `ready`'s last answer."""
        assert node.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            problem = await ready()
            if problem is None:
                return
            if node.process.returncode is not None:
                raise DevstackError(
                    f"{node.name} exited with code {node.process.returncode} before it was ready; "
                    f"the end of its log ({node.log_path}):\n{node.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise DevstackError(
                    f"{node.name} was not ready within {self.startup_timeout:g} s: {problem}; "
                    f"the end of its log ({node.log_path}):\n{node.log_tail()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(node.process.wait(), _POLL)

    async def _wait_until_registered(self, nodes: list[Node]) -> None:
        """Every compute node answers GetNodeInfo and has registered with the requester.

        Registration shows in GetNodeInfo's debug info (a "requester" component with "registered": true)
        or, from nodes that do not report it there, in their log ("registered with requester").
        """
        deadline = time.monotonic() + self.startup_timeout
        logs_tell = self.log_level.upper() in ("DEBUG", "INFO")

        async def registered(node: Node) -> None:
            # GetNodeInfo answers any node of the cluster or an operator: the devstack asks as the operator.
            credentials = self.channel_credentials(operator=True)
            async with open_channel(node.address, credentials=credentials) as channel:
                stub = cgrpc.ComputeServiceStub(channel)
                problem = "it has not registered with the requester"
                while True:
                    try:
                        info = await call(stub.GetNodeInfo, cpb.GetNodeInfoRequest(), timeout=2.0)
                        reported = registration(info)
                        if reported or (reported is None and (not logs_tell or logged_registration(node))):
                            return
                    except BacalhauError as err:
                        problem = f"it does not answer GetNodeInfo: {err}"
                    if node.process is not None and node.process.returncode is not None:
                        raise DevstackError(
                            f"{node.name} exited with code {node.process.returncode}; "
                            f"the end of its log ({node.log_path}):\n{node.log_tail()}"
                        )
                    if time.monotonic() > deadline:
                        raise DevstackError(
                            f"{node.name} at {node.address} is not ready after {self.startup_timeout:g} s: "
                            f"{problem}; the end of its log ({node.log_path}):\n{node.log_tail()}"
                        )
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(registered(node) for node in nodes))

    async def wait_for_exit(self) -> Node:
        """Wait until a node exits while the devstack is not stopping; return it."""
        nodes = [n for n in self.processes if n.process is not None]
        if not nodes:
            raise DevstackError("the devstack is not started")
        waits = {asyncio.ensure_future(n.process.wait()): n for n in nodes}  # type: ignore[union-attr]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return waits[next(iter(done))]
        finally:
            for task in waits:
                task.cancel()

    async def stop(self) -> None:
        """Stop the dashboard, then the compute nodes, then the requester, then the verifier: SIGTERM, SIGKILL
        after the grace."""
        if self._stopped:
            return
        self._stopped = True
        for group in ([self.dashboard], self.computes, [self.requester], [self.verifier]):
            await asyncio.gather(*(self._stop_node(n) for n in group if n is not None))
        for end in (self._pipe_write, self._pipe_read):
            if end is not None:
                os.close(end)
        self._pipe_write = self._pipe_read = None
        if self.remove_data_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    async def _stop_node(self, node: Node) -> None:
        process = node.process
        node.stopping = True
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.stop_grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
