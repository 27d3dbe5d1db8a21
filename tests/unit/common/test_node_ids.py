"""Node IDs: one rule wherever an ID comes from, and the ID file a node keeps in its data dir."""

import pytest

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.node_ids import check_node_id, resolve_node_id


@pytest.mark.parametrize("node_id", ["node-1", "requester-0a1b2c", "QmAbc.def_ghi", "n" * 128, "..."])
def test_good_node_ids_pass(node_id):
    assert check_node_id(node_id) == node_id


@pytest.mark.parametrize(
    "node_id", ["", ".", "..", "../../escape", "a/b", "a\\b", "a b", "n" * 129, "é", None]
)
def test_bad_node_ids_are_refused_naming_the_field_and_the_rule(node_id):
    with pytest.raises(InvalidArgumentError, match=r"a node ID is 1 to 128 characters") as refused:
        check_node_id(node_id, field="node.node_id")
    assert refused.value.field == "node.node_id"


def test_a_new_id_is_kept_and_a_configured_one_replaces_it(tmp_path):
    first = resolve_node_id(tmp_path, "", "node-new")
    assert first == "node-new" and (tmp_path / "node_id").read_text() == "node-new\n"
    assert resolve_node_id(tmp_path, "", "node-other") == "node-new"  # the kept one wins over a new one
    assert resolve_node_id(tmp_path, "node-mine", "node-other") == "node-mine"
    assert (tmp_path / "node_id").read_text() == "node-mine\n"
    assert [p.name for p in tmp_path.iterdir()] == ["node_id"]  # no temporary file left


def test_a_bad_configured_id_or_id_file_is_an_error_that_changes_nothing(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"bad node ID '\.\./x'"):
        resolve_node_id(tmp_path, "../x", "node-new")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "node_id").write_text("../../escape\n")
    with pytest.raises(InvalidArgumentError, match="holds no valid node ID: delete it or set one"):
        resolve_node_id(tmp_path, "", "node-new")
    assert (tmp_path / "node_id").read_text() == "../../escape\n"
