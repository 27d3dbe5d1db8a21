"""One settings mechanism for the three services: defaults < config file < environment < flags, and every
value that cannot be read is an error naming the setting and where the value came from."""

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.compute.settings import ComputeSettings
from bacalhau_grpc.requester.settings import RequesterSettings
from bacalhau_grpc.verifier.settings import VerifierSettings


def config(tmp_path, text: str):
    path = tmp_path / "node.yaml"
    path.write_text(text)
    return path


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path):
    file = config(
        tmp_path, "node_timeout: 30\nheartbeat_interval: 3\ncall_timeout: 7\nverifier_address: v:1\n"
    )
    env = {"BACALHAU_HEARTBEAT_INTERVAL": "4", "BACALHAU_CALL_TIMEOUT": "8"}
    settings = RequesterSettings.from_env(env, file, call_timeout=9.0, port=None)
    assert (settings.node_timeout, settings.heartbeat_interval, settings.call_timeout) == (30.0, 4.0, 9.0)
    assert settings.verifier_address == "v:1" and settings.port == 0  # from the file; the default


def test_every_service_reads_the_same_file_format(tmp_path):
    file = config(tmp_path, "node-id: verifier-from-file\ninsecure: true\nhealth_port: 0\n")
    verifier = VerifierSettings.from_env({}, file)
    assert (verifier.node_id, verifier.insecure, verifier.health_port) == ("verifier-from-file", True, 0)
    file = config(tmp_path, "requester_address: r:1\nlimit_total_cpu: 2\nnoop_delay: 1\nbad_actor: 'yes'\n")
    compute = ComputeSettings.from_env({}, file)
    assert (compute.limit_total_cpu, compute.noop_delay, compute.bad_actor) == ("2", 1.0, True)


def test_an_empty_file_changes_nothing(tmp_path):
    assert VerifierSettings.from_env({}, config(tmp_path, "")) == VerifierSettings()


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("colour: blue\n", "colour", r"unknown setting 'colour' in the config file .*node\.yaml"),
        ("port: http\n", "port", r"expected a whole number, got 'http' \(from port in .*node\.yaml\)"),
        ("port: 1.5\n", "port", r"expected a whole number, got 1\.5"),
        ("insecure: 2\n", "insecure", r"expected true or false, got 2"),
        ("node_id: [a, b]\n", "node_id", r"expected text, got \['a', 'b'\]"),
        ("- port\n", "config", r"must be a mapping of setting names to values, not a list"),
        ("port: [\n", "config", r"is not YAML"),
    ],
)
def test_a_bad_file_is_an_error_naming_the_setting_and_the_file(tmp_path, text, field, message):
    with pytest.raises(InvalidArgumentError, match=message) as refused:
        VerifierSettings.from_env({}, config(tmp_path, text))
    assert refused.value.field == field


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"cannot read the config file .*missing\.yaml"):
        VerifierSettings.from_env({}, tmp_path / "missing.yaml")


@pytest.mark.parametrize("cls", [RequesterSettings, ComputeSettings, VerifierSettings])
def test_environment_values_that_cannot_be_read_name_the_setting_and_the_variable(cls):
    with pytest.raises(
        InvalidArgumentError, match=r"expected a whole number, got 'http' \(from BACALHAU_PORT\)"
    ) as e:
        cls.from_env({"BACALHAU_PORT": "http", "BACALHAU_REQUESTER_ADDRESS": "r:1"})
    assert e.value.field == "port"


def test_checks_after_loading_name_every_way_to_set_the_setting(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"\(setting port: BACALHAU_PORT or --port\)"):
        VerifierSettings.from_env({}, config(tmp_path, "port: 70000\n"))
