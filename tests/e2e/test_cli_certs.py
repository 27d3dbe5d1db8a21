"""`bacalhau-grpc certs ca` and `certs issue` through the real CLI: what they print, the files and modes
they write, and their errors (one "Error: ..." line, exit code 1)."""

import stat
from pathlib import Path

from cryptography import x509

from bacalhau_grpc.common import certs
from bacalhau_grpc.common.certs import Identity
from tests.e2e.cli_support import clean_env, run_cli


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def error_line(result) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def test_ca_then_node_and_operator_certificates(tmp_path: Path):
    env = clean_env()
    ca_dir = tmp_path / "certs"
    result = run_cli("certs", "ca", "--out", str(ca_dir), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"CA certificate: {ca_dir}/ca.pem",
        f"CA key:         {ca_dir}/ca-key.pem (mode 0600: keep it safe, it signs every certificate)",
    ]
    assert mode(ca_dir / "ca.pem") == 0o644
    assert mode(ca_dir / "ca-key.pem") == 0o600

    result = run_cli(
        "certs", "issue", "--ca", str(ca_dir), "--role", "compute", "--node-id", "node-1", env=env
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:5] == [
        "Identity:    spiffe://bacalhau-grpc/compute/node-1",
        f"Certificate: {ca_dir}/compute-node-1.pem",
        f"Key:         {ca_dir}/compute-node-1-key.pem (mode 0600)",
        f"CA:          {ca_dir}/ca.pem",
        "Hosts:       localhost, 127.0.0.1",
    ]
    assert lines[5].startswith("Expires:     ") and lines[5].endswith(" UTC")
    assert mode(ca_dir / "compute-node-1-key.pem") == 0o600
    pem = (ca_dir / "compute-node-1.pem").read_bytes()
    assert certs.identity_of(pem) == Identity("compute", "node-1")

    out_dir = tmp_path / "elsewhere"
    result = run_cli(
        "certs",
        "issue",
        "--ca",
        str(ca_dir),
        "--role",
        "requester",
        "--node-id",
        "requester-0",
        "--dns",
        "requester.example.org",
        "--dns",
        "localhost",
        "--ip",
        "10.0.0.5",
        "--ip",
        "::1",
        "--days",
        "30",
        "--out",
        str(out_dir),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert f"Certificate: {out_dir}/requester-requester-0.pem" in result.stdout
    assert "Hosts:       requester.example.org, localhost, 10.0.0.5, ::1" in result.stdout
    cert = x509.load_pem_x509_certificate((out_dir / "requester-requester-0.pem").read_bytes())
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30  # and the 5 minutes of skew
    assert mode(out_dir / "requester-requester-0-key.pem") == 0o600

    result = run_cli("certs", "issue", "--ca", str(ca_dir), "--role", "client", "--node-id", "alice", env=env)
    assert result.returncode == 0, result.stderr
    assert "Identity:    spiffe://bacalhau-grpc/client/alice" in result.stdout
    assert "Hosts:" not in result.stdout
    assert certs.identity_of((ca_dir / "client-alice.pem").read_bytes()) == Identity("client", "alice")


def test_errors_are_one_line(tmp_path: Path):
    env = clean_env()
    ca_dir = tmp_path / "certs"
    assert run_cli("certs", "ca", "--out", str(ca_dir), env=env).returncode == 0
    ca_before = (ca_dir / "ca.pem").read_bytes()

    def issue(*args: str):
        return run_cli("certs", "issue", "--ca", str(ca_dir), *args, env=env)

    assert error_line(issue("--role", "admin", "--node-id", "n")) == (
        "Error: unknown role 'admin': the roles are requester, compute, verifier, client"
    )
    assert error_line(issue("--role", "compute", "--node-id", "n", "--ip", "10.0.0.300")).startswith(
        "Error: bad IP address '10.0.0.300'"
    )
    assert error_line(issue("--role", "compute", "--node-id", "a/b")).startswith(
        "Error: node_id: bad node ID 'a/b'"
    )
    assert error_line(issue("--role", "compute", "--node-id", "n", "--days", "0")) == (
        "Error: the certificate must be valid for at least 1 day, not 0"
    )
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca-key.pem", "ca.pem"]  # nothing written

    line = error_line(run_cli("certs", "ca", "--out", str(ca_dir), env=env))
    assert line.startswith(f"Error: a CA exists already in {ca_dir}")
    assert line.endswith("replace it anyway with --force")
    assert (ca_dir / "ca.pem").read_bytes() == ca_before
    result = run_cli("certs", "ca", "--out", str(ca_dir), "--force", env=env)
    assert result.returncode == 0, result.stderr
    assert (ca_dir / "ca.pem").read_bytes() != ca_before

    missing = tmp_path / "no-ca"
    line = error_line(
        run_cli("certs", "issue", "--ca", str(missing), "--role", "compute", "--node-id", "n", env=env)
    )
    assert line == (
        f"Error: there is no CA in {missing} (no ca.pem, no ca-key.pem): make one with "
        f"`bacalhau-grpc certs ca --out {missing}`"
    )


def test_help_shows_the_examples():
    env = clean_env()
    result = run_cli("certs", "issue", "--help", env=env)
    assert result.returncode == 0
    assert "bacalhau-grpc certs issue --ca certs --role compute --node-id node-1" in result.stdout
    assert "--role {requester,compute,verifier,client}" in result.stdout
    result = run_cli("certs", "--help", env=env)
    assert "grpcurl -cacert certs/ca.pem -cert certs/client-alice.pem" in result.stdout
