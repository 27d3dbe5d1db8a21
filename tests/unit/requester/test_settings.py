"""RequesterSettings: defaults, BACALHAU_* variables, flag overrides, errors naming the setting."""

from pathlib import Path

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.requester.app import resolve_node_id
from bacalhau_grpc.requester.settings import RequesterSettings


def test_defaults_and_required_verifier_address():
    s = RequesterSettings(verifier_address="127.0.0.1:9000")
    assert (s.host, s.port, s.node_id) == ("127.0.0.1", 0, "")
    assert (s.negotiation_timeout, s.default_job_timeout) == (120.0, 1800.0)
    assert (s.heartbeat_interval, s.node_timeout, s.call_timeout) == (2.0, 10.0, 10.0)
    assert s.db_path == s.data_dir / "requester.db"
    with pytest.raises(InvalidArgumentError) as caught:
        RequesterSettings()
    assert caught.value.field == "verifier_address"
    assert "BACALHAU_VERIFIER_ADDRESS" in str(caught.value) and "--verifier-address" in str(caught.value)


def test_from_env_then_overrides(tmp_path):
    env = {
        "BACALHAU_VERIFIER_ADDRESS": "v:1",
        "BACALHAU_PORT": "7000",
        "BACALHAU_DATA_DIR": str(tmp_path),
        "BACALHAU_NEGOTIATION_TIMEOUT": "2.5",
        "BACALHAU_NODE_ID": "requester-fixed",
        "UNRELATED": "x",
    }
    s = RequesterSettings.from_env(env, port=None, call_timeout=3)
    assert s.verifier_address == "v:1" and s.port == 7000 and s.data_dir == Path(tmp_path)
    assert s.negotiation_timeout == 2.5 and s.node_id == "requester-fixed" and s.call_timeout == 3
    assert RequesterSettings.from_env(env, port=7001).port == 7001
    with pytest.raises(TypeError):
        RequesterSettings.from_env(env, colour="blue")


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"BACALHAU_PORT": "eighty"}, "port"),
        ({"BACALHAU_PORT": "70000"}, "port"),
        ({"BACALHAU_CALL_TIMEOUT": "0"}, "call_timeout"),
        ({"BACALHAU_NEGOTIATION_TIMEOUT": "-1"}, "negotiation_timeout"),
        ({"BACALHAU_DEFAULT_JOB_TIMEOUT": "nan"}, "default_job_timeout"),
        ({"BACALHAU_NODE_TIMEOUT": "1", "BACALHAU_HEARTBEAT_INTERVAL": "2"}, "node_timeout"),
        ({"BACALHAU_HOST": ""}, "host"),
    ],
)
def test_bad_values_name_the_setting(env, field):
    with pytest.raises(InvalidArgumentError) as caught:
        RequesterSettings.from_env({"BACALHAU_VERIFIER_ADDRESS": "v:1", **env})
    assert caught.value.field == field


def test_node_id_is_generated_once_and_kept(tmp_path):
    s = RequesterSettings(data_dir=tmp_path, verifier_address="v:1")
    first = resolve_node_id(s)
    assert first.startswith("requester-") and len(first) == len("requester-") + 12
    assert resolve_node_id(s) == first
    assert (tmp_path / "node_id").read_text().strip() == first
    fixed = RequesterSettings(data_dir=tmp_path, verifier_address="v:1", node_id="requester-mine")
    assert resolve_node_id(fixed) == "requester-mine"
    with pytest.raises(InvalidArgumentError):
        resolve_node_id(RequesterSettings(data_dir=tmp_path, verifier_address="v:1", node_id="bad id!"))
