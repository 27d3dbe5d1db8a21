"""URL inputs as a user meets them: sharded by their file names, batched, run at concurrency 3 and
downloaded with `get`; two of them in one WASM job; and a URL naming no file refused at submission.

Real `bacalhau-grpc` subprocesses against a devstack like tests/e2e/conftest.py's (3 compute nodes, one
a bad actor; the jobs here use the noop verifier) that lets URL inputs reach 127.0.0.0/8, downloading
from a real HTTP server on 127.0.0.1:0. A URL input is the file `/inputs/<name>`, named from the URL as
submitted (percent-decoded, even when the server redirects elsewhere): that is the path a glob matches
and the path every engine mounts.
"""

import re
from pathlib import Path

import pytest

from tests.e2e.cli_support import DEFAULT_ARGS, RunningDevstack, job_id_of, run_cli
from tests.e2e.file_server import serve_files

WASM = Path(__file__).resolve().parent.parent / "wasm"
WAIT = ("--wait-timeout-secs", "120")
FILES = {
    "a b.txt": b"alpha beta\n",
    "c.txt": b"gamma\n",
    "d.txt": b"delta\n",
    "e f.txt": b"epsilon phi\n",
    "g.txt": b"eta\n",
    "notes.md": b"not matched\n",
    "elsewhere.bin": b"redirected\n",
    "files.wasm": (WASM / "files.wasm").read_bytes(),
}


@pytest.fixture(scope="module")
def devstack(tmp_path_factory):
    """conftest's devstack, whose compute nodes may download from the file server on 127.0.0.1 (URL
    inputs reach loopback addresses only when their network is allowed)."""
    stack = RunningDevstack(
        tmp_path_factory.mktemp("e2e"), (*DEFAULT_ARGS, "--url-download-allow-networks", "127.0.0.0/8")
    )
    yield stack
    stack.stop_all()


@pytest.fixture(scope="module")
def files_url():
    """The URL of each of FILES on a real HTTP server (/moved/<anything> redirects to elsewhere.bin)."""
    with serve_files(FILES.get, moved_to="elsewhere.bin") as url:
        yield url


def per_shard(out: Path) -> dict[int, list[Path]]:
    """The downloaded per_shard/<shard>_node_<id8> folders, by shard."""
    found: dict[int, list[Path]] = {}
    for folder in sorted((out / "per_shard").iterdir()):
        match = re.fullmatch(r"(\d+)_node_\S{8}", folder.name)
        assert match, folder.name
        found.setdefault(int(match.group(1)), []).append(folder)
    return found


def test_docker_run_shards_url_inputs_in_batches_at_concurrency_3_and_get_downloads_each_shard(
    devstack, docker_engine, files_url, tmp_path
):
    names = ["a b.txt", "c.txt", "d.txt", "e f.txt", "g.txt", "notes.md"]
    urls = [arg for name in names for arg in ("-u", files_url(name))]
    done = run_cli(
        "docker",
        "run",
        *urls,
        "--sharding-glob-pattern",
        "*.txt",
        "--sharding-batch-size",
        "2",
        "-c",
        "3",
        *WAIT,
        docker_engine,
        "--",
        "sh",
        "-c",
        "ls /inputs > /outputs/batch.txt; cat /inputs/*",
        env=devstack.env,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = job_id_of(done.stdout)

    out = tmp_path / "results"
    got = run_cli("get", job_id, "--output-dir", str(out), env=devstack.env, timeout=120)
    assert got.returncode == 0, got.stdout + got.stderr
    shards = per_shard(out)
    # 5 matching files in batches of 2: the last batch is short; each shard ran on all 3 nodes
    assert {shard: len(folders) for shard, folders in shards.items()} == {0: 3, 1: 3, 2: 3}
    expected = {
        0: ("a b.txt\nc.txt\n", "alpha beta\ngamma\n"),
        1: ("d.txt\ne f.txt\n", "delta\nepsilon phi\n"),
        2: ("g.txt\n", "eta\n"),
    }
    for shard, folders in shards.items():
        for folder in folders:
            batch, stdout = expected[shard]
            assert (folder / "outputs" / "batch.txt").read_text() == batch, folder
            assert (folder / "stdout").read_text() == stdout, folder
            assert (folder / "exitCode").read_text() == "0"
    combined = (out / "combined_results" / "stdout").read_text()
    assert combined == "".join(stdout * 3 for _, stdout in expected.values())


def test_a_wasm_job_file_shards_url_inputs_by_the_names_in_their_urls(
    devstack, files_url, job_file, tmp_path
):
    """Names with spaces, and a URL redirected to another name: its file is still /inputs/z.txt."""
    job = f"""\
APIVersion: V1beta1
Spec:
  Engine: Wasm
  Verifier: Noop
  Publisher: Local
  Wasm:
    Parameters: [/inputs, /outputs/batch.txt]
  Timeout: 60
  Contexts:
  - StorageSource: URLDownload
    URL: {files_url("files.wasm")}
    path: /job
  inputs:
  - {{StorageSource: URLDownload, URL: "{files_url("a b.txt")}", path: /inputs}}
  - {{StorageSource: URLDownload, URL: "{files_url("notes.md")}", path: /inputs}}
  - {{StorageSource: URLDownload, URL: "{files_url("z.txt", folder="moved")}", path: /inputs}}
  outputs:
  - {{StorageSource: IPFS, Name: outputs, path: /outputs}}
  Sharding:
    GlobPattern: "*.txt"
    GlobPatternBasePath: /inputs
Deal:
  Concurrency: 1
"""
    out = tmp_path / "results"
    done = run_cli(
        "create", job_file(job), "--download", "--output-dir", str(out), *WAIT, env=devstack.env, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    shards = per_shard(out)
    assert sorted(shards) == [0, 1]
    ((first,), (second,)) = shards[0], shards[1]
    assert (first / "stdout").read_text() == "read 11 bytes from /inputs/a b.txt\nwrote /outputs/batch.txt\n"
    assert (first / "outputs" / "batch.txt").read_text() == "ALPHA BETA\n"
    assert (second / "stdout").read_text() == "read 11 bytes from /inputs/z.txt\nwrote /outputs/batch.txt\n"
    assert (second / "outputs" / "batch.txt").read_text() == "REDIRECTED\n"


def test_wasm_run_takes_two_url_inputs_side_by_side_under_inputs(devstack, files_url, tmp_path):
    out = tmp_path / "results"
    done = run_cli(
        "wasm",
        "run",
        "-u",
        files_url("a b.txt"),
        "-u",
        files_url("c.txt"),
        "--download",
        "--output-dir",
        str(out),
        *WAIT,
        str(WASM / "files.wasm"),
        "/inputs/a b.txt",
        "/inputs/c.txt",
        "/outputs/both.txt",
        env=devstack.env,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    combined = out / "combined_results"
    assert (combined / "stdout").read_text() == (
        "read 11 bytes from /inputs/a b.txt\nread 6 bytes from /inputs/c.txt\nwrote /outputs/both.txt\n"
    )
    assert (combined / "outputs" / "both.txt").read_text() == "ALPHA BETA\nGAMMA\n"


@pytest.mark.parametrize(
    ("flags", "prefix"),
    [((), "Error verifying job: "), (("--skip-syntax-checking",), "Error: ")],
)
def test_a_url_naming_no_file_is_refused_at_submission_naming_the_input(devstack, files_url, flags, prefix):
    folder = files_url("", folder="data")  # http://127.0.0.1:<port>/data/
    failed = run_cli(
        "docker",
        "run",
        "--engine",
        "noop",
        "-u",
        files_url("c.txt"),
        "-u",
        folder,
        *flags,
        "image",
        env=devstack.env,
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stdout == ""
    assert failed.stderr.strip() == (
        f"{prefix}Spec.inputs[1].URL: URL '{folder}' has no file name: "
        "its path must end in the name of the file to download"
    )
