"""Hostile jobs and a hostile node, as a stranger would try them, end to end: links and special files in a
job's outputs (Docker, and Python on WASI), URL inputs aimed inside the network (directly and by a
redirect), outputs past the disk limit, WebAssembly modules with three memories or a huge table, and a
compute node whose ID is a path.

Everything goes through real processes: `bacalhau-grpc devstack` subprocesses (RunningDevstack) driven by
the real CLI (`docker run`, `wasm run`, `run python`, `create`, `list`, `describe`, `events`, `get`), with
the real Docker engine (the `docker_engine` fixture; the compute nodes are given it with --docker-host),
real wasmtime in the compute node processes, and real HTTP servers on 127.0.0.1:0 / 127.0.0.2:0. What is
asserted is what a user sees: the CLI's exit code and message, the job's state in `list`, its events in
`describe` / `events`, and the files `get` downloads.

Two devstacks:
- `devstack`: TLS, one compute node that reaches the Docker engine, no --url-download-allow-networks (so
  nothing inside is reachable by URL inputs), the node's --limit-job-disk at 2 MiB.
- `open_devstack`: --insecure, one compute node that may download from 127.0.0.2/32 only; a node ID that
  is a path is refused there both by `serve` and by the requester (real grpcurl).
"""

import http.server
import json
import os
import re
import subprocess
import threading
import urllib.parse
from collections import Counter
from pathlib import Path

import pytest
import wasmtime
from google.protobuf import json_format

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.pb.requester.v1 import requester_service_pb2 as rpb
from tests.e2e.cli_support import COMMAND, RunningDevstack, clean_env, job_id_of, run_cli
from tests.integration.common_testing import grpcurl_path
from tests.wasm.hostile import PYTHON_LINKS, TABLE_GROW, THREE_MEMORIES

WASM = Path(__file__).resolve().parent.parent / "wasm"
WAIT = ("--wait-timeout-secs", "120")
HINT = "(allow its network with --url-download-allow-networks)"
# In the compute nodes' environment: what /proc/self/environ would show if a link were followed there.
SECRET_NAME, SECRET = "HOSTILE_JOBS_SECRET", "s3cr3t-0f-the-n0de-d0-n0t-leak"
HOSTILE_NODE_ID = "../../escape"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


# ------------------------------------------------------------------------------------------- helpers


class _Files(http.server.BaseHTTPRequestHandler):
    """GET /data/<name> answers "<name> from <host>"; /to/<name>?url=U redirects to U. Every path asked
    for is counted in the server's `hits`."""

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        self.server.hits[parts.path] += 1
        if parts.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", urllib.parse.parse_qs(parts.query)["url"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not parts.path.startswith("/data/"):
            self.send_error(404)
            return
        body = f"{parts.path.removeprefix('/data/')} from {self.server.server_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class FileServer:
    """A real HTTP server on `host`:0, in a thread."""

    def __init__(self, host: str) -> None:
        self.server = http.server.ThreadingHTTPServer((host, 0), _Files)
        self.server.hits = Counter()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        address, port = self.server.server_address[:2]
        self.base = f"http://{address}:{port}"

    @property
    def hits(self) -> Counter:
        return self.server.hits

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def docker_host_flags() -> tuple[str, ...]:
    """--docker-host for the engine the `docker_engine` fixture checked (DOCKER_HOST, else the socket)."""
    return ("--docker-host", os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST)


def events(env: dict[str, str], job_id: str) -> list[tuple[str, str]]:
    """The job's events as `describe --json --include-events` shows them: (EventName, Status)."""
    described = run_cli("describe", job_id, "--json", "--include-events", env=env)
    assert described.returncode == 0, described.stdout + described.stderr
    return [(e["EventName"], e.get("Status", "")) for e in json.loads(described.stdout)["JobEvents"]]


def statuses(env: dict[str, str], job_id: str, name: str) -> list[str]:
    return [status for event, status in events(env, job_id) if event == name]


def listed_state(env: dict[str, str], job_id: str) -> str:
    """The STATE column of the job's row in `list`."""
    listed = run_cli("list", "--id-filter", job_id, env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    header, *rows = listed.stdout.strip().splitlines()
    (row,) = [row for row in rows if row.split()[1] == job_id[:8]]
    columns = re.split(r"\s{2,}", header.strip())
    return re.split(r"\s{2,}", row.strip())[columns.index("STATE")]


def tree(folder: Path) -> dict[str, str]:
    """Every path under `folder` (relative) -> its kind, links not followed."""
    kinds = {}
    for path in sorted(folder.rglob("*")):
        kinds[str(path.relative_to(folder))] = (
            "link" if path.is_symlink() else "dir" if path.is_dir() else "file" if path.is_file() else "other"
        )
    return kinds


def assert_only_plain_results(out: Path, outputs: list[str]) -> None:
    """`get` wrote only regular files and folders, the outputs folder holds `outputs` alone, and no file
    holds the node's environment or its /etc."""
    kinds = tree(out)
    assert kinds, "get downloaded nothing"
    assert set(kinds.values()) <= {"file", "dir"}, kinds
    assert sorted(p.name for p in (out / "combined_results" / "outputs").iterdir()) == outputs, kinds
    for name, kind in kinds.items():
        if kind == "file":
            data = (out / name).read_bytes()
            assert SECRET.encode() not in data, name  # the node's /proc/self/environ
            assert b"root:x:0:0:" not in data, name  # a passwd file
            assert b"PRETTY_NAME=" not in data, name  # the host's /etc/os-release


def failed_job(done: subprocess.CompletedProcess) -> tuple[str, str]:
    """A `--wait` that ended with the job in error: (its ID, the error line on stderr)."""
    assert done.returncode == 1, done.stdout + done.stderr
    job_id = job_id_of(done.stdout)
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: job {job_id} failed: "), line
    return job_id, line


def wat_module(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.wasm"
    path.write_bytes(wasmtime.wat2wasm(text))
    return path


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def devstack(tmp_path_factory, docker_engine):
    """TLS, one compute node on the Docker engine, nothing inside reachable by URL, 2 MiB of disk a job;
    the nodes' environment holds SECRET."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET_NAME, SECRET)  # clean_env copies os.environ into the devstack's processes
        stack = RunningDevstack(
            tmp_path_factory.mktemp("hostile"),
            ("--nodes", "1", "--bad-actors", "0", "--limit-job-disk", "2Mi", *docker_host_flags()),
        )
    try:
        ((_, _, pid),) = stack.computes.values()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"{SECRET_NAME}={SECRET}".encode() in environ  # what a followed link would leak
    except BaseException:
        stack.stop_all()
        raise
    yield stack
    stack.stop_all()


@pytest.fixture(scope="module")
def open_devstack(tmp_path_factory):
    """--insecure, one compute node that may download from 127.0.0.2/32 alone."""
    tmp = tmp_path_factory.mktemp("hostile-open")
    allow = ("--url-download-allow-networks", "127.0.0.2/32")
    stack = RunningDevstack(tmp, ("--insecure", "--nodes", "1", "--bad-actors", "0", *allow))
    yield stack
    stack.stop_all()


@pytest.fixture(scope="module")
def loopback_server():
    server = FileServer("127.0.0.1")
    yield server
    server.close()


@pytest.fixture(scope="module")
def allowed_server():
    """On 127.0.0.2, the one address open_devstack's nodes may download from."""
    server = FileServer("127.0.0.2")
    yield server
    server.close()


# ------------------------------------------------------------------------- links in a job's outputs


def test_links_hard_links_and_a_fifo_from_a_docker_job_never_reach_get(devstack, docker_engine, tmp_path):
    script = (
        "echo ok > /outputs/ok.txt; ln -s /etc /outputs/x; ln -s /etc/passwd /outputs/passwd;"
        " ln -s /proc/self/environ /outputs/environ; echo a > /outputs/a; ln /outputs/a /outputs/hard;"
        " mkfifo /outputs/fifo; ls /outputs"
    )
    out = tmp_path / "results"
    done = run_cli(
        "docker",
        "run",
        "--node-details",
        "--download",
        "--output-dir",
        str(out),
        *WAIT,
        docker_engine,
        "--",
        "sh",
        "-c",
        script,
        env=devstack.env,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = job_id_of(done.stdout)
    # the container did make them all
    assert (
        "      a\n      environ\n      fifo\n      hard\n      ok.txt\n      passwd\n      x\n" in done.stdout
    )
    assert listed_state(devstack.env, job_id) == "Completed"

    assert_only_plain_results(out, ["ok.txt"])
    assert (out / "combined_results" / "outputs" / "ok.txt").read_text() == "ok\n"
    # `get` on its own lays out the same plain files
    again = tmp_path / "again"
    got = run_cli("get", job_id, "--output-dir", str(again), env=devstack.env)
    assert got.returncode == 0, got.stdout + got.stderr
    assert tree(again) == tree(out)

    (proposed,) = statuses(devstack.env, job_id, "ResultsProposed")
    assert proposed.startswith("left out of the results (links and special files are never kept): ")
    dropped = proposed.split(": ", 1)[1].split(", ")
    assert dropped == [f"outputs/{name}" for name in ("a", "environ", "fifo", "hard", "passwd", "x")]


def test_links_a_python_job_makes_under_wasi_never_reach_get(devstack, tmp_path):
    program = tmp_path / "program"
    program.mkdir()
    (program / "main.py").write_text(PYTHON_LINKS)
    out = tmp_path / "results"
    done = run_cli(
        "run",
        "python",
        str(program / "main.py"),
        "--context-path",
        str(program),
        "--download",
        "--output-dir",
        str(out),
        *WAIT,
        env=devstack.env,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = job_id_of(done.stdout)
    stdout = (out / "combined_results" / "stdout").read_text()
    made = stdout.split("made", 1)[1].split()
    # WASI refuses a link to an absolute path, but makes relative ones inside the outputs
    assert "refused /outputs/etc" in stdout, stdout
    assert made and "/outputs/etc" not in made, stdout

    assert_only_plain_results(out, ["ok.txt"])
    assert (out / "combined_results" / "outputs" / "ok.txt").read_text() == "ok"
    (proposed,) = statuses(devstack.env, job_id, "ResultsProposed")
    assert "left out of the results (links and special files are never kept): " in proposed, proposed
    listed = proposed.split("never kept): ", 1)[1].split(";")[0].split(", ")
    assert listed == [name.removeprefix("/") for name in made], proposed


# ------------------------------------------------------------------------------ URL inputs inside


@pytest.mark.parametrize(
    ("where", "shown", "kind"),
    [
        ("loopback", "127.0.0.1", "a loopback address"),
        ("metadata", "169.254.169.254", "a cloud metadata address"),
    ],
)
def test_a_url_input_inside_the_network_fails_the_job_naming_the_address(
    devstack, loopback_server, where, shown, kind
):
    url = (
        f"{loopback_server.base}/data/secret.txt"
        if where == "loopback"
        else "http://169.254.169.254/latest/meta-data/iam.txt"
    )
    done = run_cli("wasm", "run", "-u", url, *WAIT, str(WASM / "hello.wasm"), env=devstack.env, timeout=180)
    job_id, line = failed_job(done)
    refusal = f"URL input {url}: refusing to download from {shown}, {kind} {HINT}"
    assert refusal in line
    assert listed_state(devstack.env, job_id) == "Error"
    (error,) = statuses(devstack.env, job_id, "ComputeError")
    assert error == f"Spec.inputs[0] (URLDownload {url}): {refusal}"
    assert loopback_server.hits == Counter()  # refused before connecting


def test_a_url_input_redirected_inside_fails_the_job_at_the_redirect(
    open_devstack, allowed_server, loopback_server, tmp_path
):
    env = open_devstack.env
    # The allowed server is reached: a plain download from it works.
    fine = f"{allowed_server.base}/data/fine.txt"
    done = run_cli(
        "wasm",
        "run",
        "-u",
        fine,
        "--node-details",
        *WAIT,
        str(WASM / "files.wasm"),
        "/inputs/fine.txt",
        "/outputs/fine.txt",
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "read 24 bytes from /inputs/fine.txt" in done.stdout, done.stdout

    targets = {
        f"{loopback_server.base}/data/secret.txt": "refusing to download from 127.0.0.1, a loopback address",
        "http://169.254.169.254/latest/meta-data/iam.txt": (
            "refusing to download from 169.254.169.254, a cloud metadata address"
        ),
    }
    for target, refused in targets.items():
        url = f"{allowed_server.base}/to/data.txt?url={urllib.parse.quote(target, safe='')}"
        done = run_cli("wasm", "run", "-u", url, *WAIT, str(WASM / "hello.wasm"), env=env, timeout=180)
        job_id, line = failed_job(done)
        refusal = f"URL input {url}: redirected to {target}: {refused} {HINT}"
        assert refusal in line
        assert listed_state(env, job_id) == "Error"
        errors = statuses(env, job_id, "ComputeError")
        assert errors and all(error == f"Spec.inputs[0] (URLDownload {url}): {refusal}" for error in errors)
    assert allowed_server.hits["/to/data.txt"] >= 2  # each redirect was asked for...
    assert loopback_server.hits == Counter()  # ...and never followed


# ------------------------------------------------------------------------------------- disk limit


def test_docker_outputs_past_the_disk_limit_fail_the_execution_naming_the_limit(
    devstack, docker_engine, job_file
):
    endless = "i=0; while true; do head -c 262144 /dev/zero > /outputs/part$i; i=$((i+1)); done"
    job = f"""\
Spec:
  Engine: Docker
  Docker:
    Image: {docker_engine}
    Entrypoint: [sh, -c, '{endless}']
  Resources: {{Disk: 1Mi}}
  Timeout: 60
  outputs:
  - {{StorageSource: IPFS, Name: outputs, path: /outputs}}
"""
    job_id, line = failed_job(run_cli("create", job_file(job), *WAIT, env=devstack.env, timeout=180))
    limit = re.compile(
        r"^outputs exceeded the disk limit of 1048576 bytes \(1 MiB\) \(Resources\.Disk\): \d+ bytes .* "
        r"written, container stopped \(exit code 137\)$"
    )
    (error,) = statuses(devstack.env, job_id, "ComputeError")
    assert limit.match(error), error
    assert error in line
    assert listed_state(devstack.env, job_id) == "Error"

    # A job asking for no disk gets the node's --limit-job-disk (2 MiB).
    done = run_cli(
        "docker",
        "run",
        *WAIT,
        docker_engine,
        "--",
        "sh",
        "-c",
        "head -c 3145728 /dev/zero > /outputs/big",
        env=devstack.env,
        timeout=180,
    )
    job_id, line = failed_job(done)
    (error,) = statuses(devstack.env, job_id, "ComputeError")
    assert re.match(
        r"^outputs exceeded the disk limit of 2097152 bytes \(2 MiB\) \(the node's --limit-job-disk\): "
        r"\d+ bytes",
        error,
    ), error
    assert error in line


# ------------------------------------------------------------------------------------------- WASM

# Three memories of 400 pages (25 MiB) from the start.
BIG_MEMORIES = '(module (memory 400) (memory 400) (memory 400) (func (export "_start")))'


def uploaded_module(env: dict[str, str], module: Path) -> tuple[str, str]:
    """`wasm run MODULE` (the node's default memory limit): (the job's ID, the CID of the uploaded
    module's context)."""
    done = run_cli("wasm", "run", "--id-only", *WAIT, str(module), env=env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.strip().splitlines()[-1]
    described = run_cli("describe", job_id, "--json", env=env)
    assert described.returncode == 0, described.stderr
    (context,) = json.loads(described.stdout)["Job"]["Spec"]["Contexts"]
    return job_id, context["CID"]


def with_memory(job_file, cid: str, memory: str) -> str:
    """A job file running the module of context `cid` with Resources.Memory `memory`."""
    return job_file(
        f"""\
Spec:
  Engine: Wasm
  Wasm: {{EntryPoint: _start}}
  Resources: {{Memory: {memory}}}
  Timeout: 60
  Contexts:
  - {{StorageSource: IPFS, CID: {cid}, path: /job}}
  outputs:
  - {{StorageSource: IPFS, Name: outputs, path: /outputs}}
""",
        name=f"{cid[-8:]}-{memory}.yaml",
    )


def exit_code_got(env: dict[str, str], job_id: str, out: Path) -> str:
    got = run_cli("get", job_id, "--output-dir", str(out), env=env)
    assert got.returncode == 0, got.stdout + got.stderr
    (exit_code,) = (out / "per_shard").glob("*/exitCode")  # one shard, one node
    return exit_code.read_text()


def test_three_memories_share_the_jobs_memory_limit(devstack, job_file, tmp_path):
    env = devstack.env
    modules = tmp_path / "modules"
    # Under the default limit (100 MiB) all six grows (75 MiB) fit; under 64 MiB, 21.3 MiB a memory, the
    # second grow of each memory is refused.
    job_id, cid = uploaded_module(env, wat_module(modules / "three", "three", THREE_MEMORIES))
    assert exit_code_got(env, job_id, tmp_path / "default") == "6"
    done = run_cli("create", "--id-only", with_memory(job_file, cid, "64Mi"), *WAIT, env=env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert exit_code_got(env, done.stdout.strip(), tmp_path / "limited") == "3"

    # Memories that do not fit from the start: the module cannot be instantiated, and the job fails.
    job_id, cid = uploaded_module(env, wat_module(modules / "big", "big", BIG_MEMORIES))
    assert exit_code_got(env, job_id, tmp_path / "big-default") == "0"
    job_id, line = failed_job(
        run_cli("create", with_memory(job_file, cid, "64Mi"), *WAIT, env=env, timeout=180)
    )
    (error,) = statuses(env, job_id, "ComputeError")
    assert error.startswith("cannot instantiate big.wasm: ") and "memory" in error, error
    assert error.endswith("(the job's memory limit is 64 MiB in total: 21.3 MiB for each of its 3 memories)")
    assert error in line
    assert listed_state(env, job_id) == "Error"


def test_a_table_cannot_grow_by_a_million_entries(devstack, job_file, tmp_path):
    """table.grow by a million entries answers -1 to the guest (it exits 1 when it sees -1): the run
    ends normally with that exit code, with and without a memory limit."""
    env = devstack.env
    job_id, cid = uploaded_module(env, wat_module(tmp_path / "modules", "table", TABLE_GROW))
    assert exit_code_got(env, job_id, tmp_path / "default") == "1"  # the guest saw -1
    done = run_cli("create", "--id-only", with_memory(job_file, cid, "64Mi"), *WAIT, env=env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.strip()
    assert exit_code_got(env, job_id, tmp_path / "limited") == "1"
    assert listed_state(env, job_id) == "Completed"


# ----------------------------------------------------------------------------- a hostile node ID


def test_a_node_id_that_is_a_path_is_refused_by_the_node_and_by_the_requester(open_devstack, tmp_path):
    """In plaintext nothing vouches for a node's ID, so both ends check it: `serve` will not start under
    it, and the requester refuses a registration carrying it (`get` refuses to make it a path too, as
    tests/integration/test_download_paths.py shows)."""
    serve = subprocess.run(
        [
            *COMMAND,
            "serve",
            "--node-type",
            "compute",
            "--insecure",
            "--port",
            "0",
            "--node-id",
            HOSTILE_NODE_ID,
            "--data-dir",
            str(tmp_path / "hostile-compute"),
            "--requester-address",
            open_devstack.address,
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode != 0
    assert f"bad node ID '{HOSTILE_NODE_ID}': a node ID is 1 to 128 characters" in serve.stderr, serve.stderr
    assert not (tmp_path / "hostile-compute" / "node_id").exists()

    node = pb.NodeInfo(node_id=HOSTILE_NODE_ID, address="127.0.0.1:1")
    done = subprocess.run(
        [
            grpcurl_path(),
            "-plaintext",
            "-d",
            json_format.MessageToJson(rpb.RegisterNodeRequest(node=node)),
            open_devstack.address,
            "bacalhau.requester.v1.RequesterNodeService/RegisterNode",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Code: InvalidArgument" in done.stderr, done.stderr
    assert f"bad node ID '{HOSTILE_NODE_ID}'" in done.stderr, done.stderr
