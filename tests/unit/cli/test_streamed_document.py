"""`output.write_streamed`: a document whose mappings and lists arrive item by item is written exactly as
the whole document would be (`describe` of a job too big for one GetJob answer)."""

import copy
import io

import pytest

from bacalhau_grpc.cli.output import Streamed, write_streamed
from bacalhau_grpc.common.model import serialization

ROWS = {str(i): {"NodeId": "n", "State": "Completed", "RunOutput": {"stdout": "x<&>\n"}} for i in range(3)}
NODES = {"a": {"Shards": ROWS}, "b": {"Shards": {"0": {}}}}
EVENTS = [{"EventName": "Created"}, {"Shards": [1, 2]}]


async def _items(items):
    for item in items:
        yield item


def _nodes() -> Streamed:
    return Streamed(
        "map",
        _items(
            [(k, {"Shards": Streamed("map", _items(list(v["Shards"].items())))}) for k, v in NODES.items()]
        ),
    )


@pytest.mark.parametrize("fmt", ["yaml", "json"])
async def test_a_streamed_document_is_the_whole_document(fmt):
    whole = {
        "Job": {"ID": "j", "JobState": {"Nodes": copy.deepcopy(NODES)}, "Z": 1},
        "JobState": {"Nodes": copy.deepcopy(NODES)},
        "JobEvents": EVENTS,
        "Empty": [],
        "EmptyMap": {},
    }
    streamed = {
        "Job": {"ID": "j", "JobState": {"Nodes": _nodes()}, "Z": 1},
        "JobState": {"Nodes": _nodes()},
        "JobEvents": Streamed("list", _items(EVENTS)),
        "Empty": Streamed("list", _items([])),
        "EmptyMap": Streamed("map", _items([])),
    }
    if fmt == "yaml":
        expected = serialization.yaml_marshal_with_max(whole)
    else:
        expected = serialization.json_marshal_indent_with_max(whole)
    out = io.StringIO()
    await write_streamed(streamed, fmt, out.write)
    assert out.getvalue() == expected.decode("utf-8").rstrip("\n") + "\n"
