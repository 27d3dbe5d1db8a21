"""`serve --config FILE` as an operator uses it, in a real process: the file's settings apply, the
environment wins over the file and flags win over both; a bad file stops `serve` at once naming the
setting and the file."""

import signal
import subprocess

import pytest

from tests.e2e.cli_support import COMMAND, Lines, clean_env


def serve_verifier(config, *flags: str, **env: str) -> str:
    """The node ID a verifier started with `--config config` reports in its "listening on" line."""
    process = subprocess.Popen(
        [*COMMAND, "serve", "--node-type", "verifier", "--insecure", "--config", str(config), *flags],
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        return Lines(process.stdout).wait_for(r"verifier (\S+) listening on 127\.0\.0\.1:\d+", 60).group(1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "verifier.yaml"
    path.write_text("# a verifier's settings\nnode-id: verifier-from-file\nport: 0\n")
    return path


def test_the_file_then_the_environment_then_the_flags(config):
    assert serve_verifier(config) == "verifier-from-file"
    assert serve_verifier(config, BACALHAU_NODE_ID="verifier-from-env") == "verifier-from-env"
    flagged = serve_verifier(config, "--node-id", "verifier-from-flag", BACALHAU_NODE_ID="verifier-from-env")
    assert flagged == "verifier-from-flag"


def test_a_bad_file_stops_serve_naming_the_setting_and_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("port: http\n")
    done = subprocess.run(
        [*COMMAND, "serve", "--node-type", "verifier", "--insecure", "--config", str(bad)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: port: expected a whole number, got 'http' (from port in {bad})"
    )
