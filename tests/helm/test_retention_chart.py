"""The chart's retention values become the nodes' retention flags (rendered with the Helm SDK)."""

import helm_python as helm
import pytest

from tests.helm.support import container, find, flag, helm_check, render_objects


def test_retention_defaults_are_rendered_as_flags():
    objects = render_objects()
    requester = container(find(objects, "Deployment", "requester"), "requester")["args"]
    compute = container(find(objects, "StatefulSet", "compute"), "compute")["args"]
    assert flag(requester, "--job-retention") == "604800"
    assert flag(requester, "--node-retention") == "86400"
    assert flag(compute, "--execution-retention") == "604800"
    assert flag(compute, "--bid-expiry") == "120"


def test_retention_values_are_passed_and_checked():
    objects = render_objects(
        {
            "requester": {"retention": {"jobs": 0, "nodes": 3600}},
            "compute": {"retention": {"executions": 86400}, "bidExpiry": 300},
        }
    )
    requester = container(find(objects, "Deployment", "requester"), "requester")["args"]
    compute = container(find(objects, "StatefulSet", "compute"), "compute")["args"]
    assert flag(requester, "--job-retention") == "0" and flag(requester, "--node-retention") == "3600"
    assert flag(compute, "--execution-retention") == "86400" and flag(compute, "--bid-expiry") == "300"
    with pytest.raises(helm.HelmValuesError, match="/requester/retention/jobs"):
        helm_check.render({"requester": {"retention": {"jobs": -1}}})
