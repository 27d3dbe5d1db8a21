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
    assert settings.limit_total_cpu == settings.limit_job_memory == ""
    assert settings.over_commit_factor == 2.0
    assert settings.job_selection_data_locality == "anywhere"
    assert settings.job_selection_reject_stateless is False
    assert settings.job_selection_probe_http == settings.job_selection_probe_exec == ""
    assert settings.job_selection_probe_timeout == 5.0
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
        "BACALHAU_LIMIT_TOTAL_CPU": "4",
        "BACALHAU_JOB_SELECTION_DATA_LOCALITY": "Local",
        "BACALHAU_JOB_SELECTION_REJECT_STATELESS": "yes",
        "BACALHAU_JOB_SELECTION_PROBE_HTTP": "https://probe.example:8443/ok?node=1",
        "BACALHAU_OVER_COMMIT_FACTOR": "1.5",
        "UNRELATED": "x",
    }
    settings = ComputeSettings.from_env(environ, port=7001, noop_delay=None)
    assert settings.port == 7001  # the flag wins
    assert settings.noop_delay == 1.5  # a flag not given (None) does not
    assert settings.data_dir == tmp_path and isinstance(settings.data_dir, Path)
    assert (settings.noop_stdout, settings.noop_exit_code, settings.bad_actor) == ("hello", 2, True)
    assert settings.limit_total_cpu == "4"
    assert settings.job_selection_data_locality == "local"  # any case, kept in lower case
    assert settings.job_selection_reject_stateless is True
    assert settings.job_selection_probe_http == "https://probe.example:8443/ok?node=1"
    assert settings.over_commit_factor == 1.5
    assert ComputeSettings.from_env({**REQUIRED, "BACALHAU_BAD_ACTOR": "0"}).bad_actor is False


def test_integers_are_accepted_for_seconds():
    settings = ComputeSettings(requester_address="x:1", noop_delay=2, call_timeout=3)
    assert isinstance(settings.noop_delay, float) and settings.call_timeout == 3.0


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({"BACALHAU_PORT": "http"}, "port"),
        ({"BACALHAU_NOOP_DELAY": "soon"}, "noop_delay"),
        ({"BACALHAU_BAD_ACTOR": "maybe"}, "bad_actor"),
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
        ({"limit_total_cpu": "many"}, "limit_total_cpu"),
        ({"limit_total_memory": "1 bucket"}, "limit_total_memory"),
        ({"limit_job_disk": "-5Gb"}, "limit_job_disk"),
        ({"limit_job_gpu": "one"}, "limit_job_gpu"),
        ({"over_commit_factor": 0.5}, "over_commit_factor"),
        ({"over_commit_factor": float("nan")}, "over_commit_factor"),
        ({"job_selection_data_locality": "nearby"}, "job_selection_data_locality"),
        ({"job_selection_data_locality": ""}, "job_selection_data_locality"),
        ({"job_selection_probe_http": "ftp://probe.example/"}, "job_selection_probe_http"),
        ({"job_selection_probe_http": "probe.example/ok"}, "job_selection_probe_http"),
        ({"job_selection_probe_http": "http:///no-host"}, "job_selection_probe_http"),
        ({"job_selection_probe_http": "http://probe.example:99999/"}, "job_selection_probe_http"),
        ({"job_selection_probe_exec": "   "}, "job_selection_probe_exec"),
        ({"job_selection_probe_timeout": 0}, "job_selection_probe_timeout"),
    ],
)
def test_values_that_cannot_work_name_the_setting(overrides, field):
    with pytest.raises(InvalidArgumentError) as error:
        ComputeSettings.from_env(REQUIRED, **overrides)
    assert error.value.field == field


def test_an_unknown_override_is_a_programming_error():
    with pytest.raises(TypeError, match="unknown setting 'colour' of ComputeSettings"):
        ComputeSettings.from_env(REQUIRED, colour="blue")


def test_bad_job_selection_values_say_what_is_accepted():
    with pytest.raises(InvalidArgumentError) as error:
        ComputeSettings.from_env(REQUIRED, job_selection_data_locality="nearby")
    assert str(error.value) == "job_selection_data_locality: 'nearby' is not one of local, anywhere"
    with pytest.raises(InvalidArgumentError) as error:
        ComputeSettings.from_env(REQUIRED, job_selection_probe_http="localhost:8080")
    assert "is not an http:// or https:// URL" in str(error.value)
    with pytest.raises(InvalidArgumentError) as error:
        ComputeSettings.from_env(REQUIRED, over_commit_factor=0.9)
    assert str(error.value) == "over_commit_factor: 0.9 is not a number >= 1"
