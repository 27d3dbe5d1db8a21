"""`--retry-timeout` on every client command and `--submission-id` on the submitting ones: what they parse
to, what the SDK client the CLI builds gets, and the line a retry prints on a terminal. The retries
themselves, against a requester that is killed and restarted: tests/e2e/test_client_retries.py."""

import io

import pytest

from bacalhau_grpc.cli import flags, main
from bacalhau_grpc.common.errors import DeadlineExceededError, UnavailableError

ADDRESS = "127.0.0.1:1234"


def parse(*argv: str):
    return main.build_parser().parse_args(list(argv))


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["describe", "x"],
        ["events", "x"],
        ["logs", "x"],
        ["cancel", "x"],
        ["get", "x"],
        ["version"],
        ["create", "job.yaml"],
        ["docker", "run", "image"],
        ["wasm", "run", "module.wasm"],
        ["run", "python", "-c", "print(1)"],
    ],
)
def test_every_client_command_takes_a_retry_timeout(command):
    assert parse(*command).retry_timeout == 30.0
    assert parse(*command, "--retry-timeout", "2.5").retry_timeout == 2.5
    assert parse(*command, "--retry-timeout", "0").retry_timeout == 0.0


@pytest.mark.parametrize("value", ["-1", "soon", "nan", "inf"])
def test_a_retry_timeout_is_zero_or_more_seconds(value, capsys):
    with pytest.raises(SystemExit) as raised:
        parse("version", "--retry-timeout", value)
    assert raised.value.code == 2
    assert "--retry-timeout: must be" in capsys.readouterr().err


def test_the_submitting_commands_take_a_submission_id():
    assert parse("docker", "run", "image").submission_id is None
    assert parse("docker", "run", "--submission-id", "nightly-1", "image").submission_id == "nightly-1"
    assert parse("create", "--submission-id", "a.b_c", "job.yaml").submission_id == "a.b_c"


async def test_the_client_gets_the_retry_timeout():
    async with flags.api_client(parse("version", "--retry-timeout", "7"), timeout=3, environ={}) as client:
        assert client.retry_timeout == 7.0 and client.timeout == 3
        assert client.on_retry is None  # pytest's stderr is not a terminal: nothing is printed


def test_a_retry_is_one_line_saying_what_the_cli_waits_for():
    error = UnavailableError(
        f"cannot reach the requester at {ADDRESS}: failed to connect to all addresses; last error: UNKNOWN: "
        f"ipv4:{ADDRESS}: Failed to connect to remote host: Connection refused"
    )
    assert flags.retry_line(ADDRESS, error, 0.8123, 30.0) == (
        f"waiting for the requester at {ADDRESS} (unavailable: Connection refused); "
        "retrying in 0.8s (up to 30s)"
    )
    late = DeadlineExceededError("Deadline Exceeded")
    assert flags.retry_line(ADDRESS, late, 1.25, 12.5) == (
        f"waiting for the requester at {ADDRESS} (no answer in time: Deadline Exceeded); retrying in 1.2s "
        "(up to 12.5s)"
    )
    out = io.StringIO()
    flags.retry_printer(ADDRESS, 30.0, out)("GetVersion", error, 0.05)
    assert out.getvalue().count("\n") == 1 and out.getvalue().startswith("waiting for the requester at ")
