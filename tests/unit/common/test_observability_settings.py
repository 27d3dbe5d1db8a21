"""`metrics_port` and `log_format`, settings of every node: defaults (no metrics, text logs) < the --config
file < BACALHAU_* variables < flags, and refused by name when they cannot work."""

from __future__ import annotations

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.compute.settings import ComputeSettings
from bacalhau_grpc.requester.settings import RequesterSettings
from bacalhau_grpc.verifier.settings import VerifierSettings

REQUIRED = {
    VerifierSettings: {},
    RequesterSettings: {"verifier_address": "127.0.0.1:1"},
    ComputeSettings: {"requester_address": "127.0.0.1:1"},
}


@pytest.mark.parametrize("cls", list(REQUIRED), ids=lambda c: c.__name__)
def test_every_node_has_them_with_metrics_off_and_text_logs(cls, tmp_path):
    required = REQUIRED[cls]
    default = cls.from_env({}, **required)
    assert (default.metrics_port, default.log_format) == (-1, "text")
    config = tmp_path / "node.yaml"
    config.write_text("metrics_port: 9100\nlog-format: json\n")
    from_file = cls.from_env({}, config, **required)
    assert (from_file.metrics_port, from_file.log_format) == (9100, "json")
    from_env = cls.from_env({"BACALHAU_METRICS_PORT": "0", "BACALHAU_LOG_FORMAT": "text"}, config, **required)
    assert (from_env.metrics_port, from_env.log_format) == (0, "text")
    flags = cls.from_env(
        {"BACALHAU_LOG_FORMAT": "text"}, config, metrics_port=9200, log_format="json", **required
    )
    assert (flags.metrics_port, flags.log_format) == (9200, "json")


@pytest.mark.parametrize(
    ("environ", "field", "text"),
    [
        ({"BACALHAU_LOG_FORMAT": "xml"}, "log_format", "'xml' is not a log format (text or json)"),
        ({"BACALHAU_METRICS_PORT": "70000"}, "metrics_port", "70000 is not a TCP port"),
        ({"BACALHAU_METRICS_PORT": "-2"}, "metrics_port", "-2 is not a TCP port"),
    ],
)
@pytest.mark.parametrize("cls", list(REQUIRED), ids=lambda c: c.__name__)
def test_bad_values_are_refused_by_name(cls, environ, field, text):
    with pytest.raises(InvalidArgumentError) as caught:
        cls.from_env(environ, **REQUIRED[cls])
    assert caught.value.field == field
    assert text in str(caught.value) and f"BACALHAU_{field.upper()}" in str(caught.value)
