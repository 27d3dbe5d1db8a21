"""ComputeSettings: defaults, environment, overrides, validation naming the setting."""

from pathlib import Path

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.compute.settings import ComputeSettings

REQUIRED = {"BACALHAU_REQUESTER_ADDRESS": "127.0.0.1:4000"}


def test_defaults():
    settings = ComputeSettings.from_env(REQUIRED)
    assert (settings.host, settings.port, settings.node_id) == ("127.0.0.1", 0, "")
    assert settings.requester_address == "127.0.0.1:4000"
    assert (settings.noop_stdout, settings.noop_stderr, settings.noop_exit_code, settings.noop_delay) == (
        "",
        "",
        0,
        0.0,
    )
    assert (settings.noop_result_hash, settings.bad_actor) == ("", False)
    assert (settings.min_job_timeout, settings.max_job_timeout, settings.call_timeout) == (0.5, 3600.0, 10.0)
    assert settings.total_cpu == settings.job_memory == ""
    assert settings.db_path == settings.data_dir / "compute.db"


def test_environment_then_overrides(tmp_path):
    environ = {
        **REQUIRED,
        "BACALHAU_PORT": "7000",
        "BACALHAU_DATA_DIR": str(tmp_path),
        "BACALHAU_NOOP_STDOUT": "hello",
        "BACALHAU_NOOP_EXIT_CODE": "2",
        "BACALHAU_NOOP_DELAY": "1.5",
        "BACALHAU_BAD_ACTOR": "true",
        "BACALHAU_TOTAL_CPU": "4",
        "UNRELATED": "x",
    }
    settings = ComputeSettings.from_env(environ, port=7001, noop_delay=None)
    assert settings.port == 7001  # the flag wins
    assert settings.noop_delay == 1.5  # a flag not given (None) does not
    assert settings.data_dir == tmp_path and isinstance(settings.data_dir, Path)
    assert (settings.noop_stdout, settings.noop_exit_code, settings.bad_actor) == ("hello", 2, True)
    assert settings.total_cpu == "4"
    assert ComputeSettings.from_env({**REQUIRED, "BACALHAU_BAD_ACTOR": "0"}).bad_actor is False


def test_integers_are_accepted_for_seconds():
    settings = ComputeSettings(requester_address="x:1", noop_delay=2, call_timeout=3)
    assert isinstance(settings.noop_delay, float) and settings.call_timeout == 3.0


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({"BACALHAU_PORT": "http"}, "BACALHAU_PORT"),
        ({"BACALHAU_NOOP_DELAY": "soon"}, "BACALHAU_NOOP_DELAY"),
        ({"BACALHAU_BAD_ACTOR": "maybe"}, "BACALHAU_BAD_ACTOR"),
    ],
)
def test_environment_values_that_cannot_be_read(environ, field):
    with pytest.raises(InvalidArgumentError) as error:
        ComputeSettings.from_env({**REQUIRED, **environ})
    assert error.value.field == field


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"requester_address": ""}, "requester_address"),
        ({"port": 70000}, "port"),
        ({"noop_delay": -1.0}, "noop_delay"),
        ({"noop_delay": float("inf")}, "noop_delay"),
        ({"min_job_timeout": -0.5}, "min_job_timeout"),
        ({"max_job_timeout": 0.1}, "max_job_timeout"),
        ({"call_timeout": 0}, "call_timeout"),
        ({"noop_result_hash": "not-hex"}, "noop_result_hash"),
        ({"total_cpu": "many"}, "total_cpu"),
        ({"total_memory": "1 bucket"}, "total_memory"),
        ({"job_disk": "-5Gb"}, "job_disk"),
        ({"job_gpu": "one"}, "job_gpu"),
    ],
)
def test_values_that_cannot_work_name_the_setting(overrides, field):
    with pytest.raises(InvalidArgumentError) as error:
        ComputeSettings.from_env(REQUIRED, **overrides)
    assert error.value.field == field


def test_an_unknown_override_is_a_programming_error():
    with pytest.raises(TypeError, match="unknown compute setting"):
        ComputeSettings.from_env(REQUIRED, colour="blue")
