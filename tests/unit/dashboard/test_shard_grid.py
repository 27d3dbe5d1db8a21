"""The dashboard's shard grid: a snapshot of the job's rows, then its events by the projection's rules
(target node else source node, never backwards, status kept when an event has none), with the changed
cells and the summary the job page gets."""

import pytest

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.dashboard.shard_grid import STATE_NAMES, ShardGrid

E = pb.JobEventType
S = pb.JobStateType


def test_state_names_are_indexed_by_state_number():
    assert STATE_NAMES[0] == "Pending"
    for value in pb.JobStateType.values():
        if value:
            assert (
                STATE_NAMES[value].lower()
                == pb.JobStateType.Name(value).removeprefix("JOB_STATE_TYPE_").lower()
            )


def test_snapshot_lists_every_cell_with_node_indices_and_the_summary():
    grid = ShardGrid(3)
    grid.put("node-b", 0, S.JOB_STATE_TYPE_COMPLETED, "done")
    grid.put("node-a", 1, S.JOB_STATE_TYPE_RUNNING, "")
    grid.put("node-b", 1, S.JOB_STATE_TYPE_COMPLETED, "")
    snapshot = grid.snapshot()
    assert snapshot["nodes"] == ["node-b", "node-a"]
    assert snapshot["shards"] == 3
    assert snapshot["cells"] == [[0, 0, 7, "done"], [0, 1, 7, ""], [1, 1, 3, ""]]
    assert snapshot["summary"] == {
        "State": "Completed",
        "ShardsDone": 2,
        "ShardsTotal": 3,
        "Counts": {"Running": 1, "Completed": 2},
    }
    assert grid.changes() is None  # the snapshot took every change


def test_events_move_cells_forward_only_and_changes_name_them_once():
    grid = ShardGrid(2)
    grid.snapshot()
    assert grid.apply(E.JOB_EVENT_TYPE_BID, "node-a", 0, "")
    # BidAccepted comes from the requester and targets the node: the node's row moves
    assert grid.apply(E.JOB_EVENT_TYPE_BID_ACCEPTED, "node-a", 0, "")
    assert grid.apply(E.JOB_EVENT_TYPE_RESULTS_PUBLISHED, "node-a", 0, "published")
    assert not grid.apply(E.JOB_EVENT_TYPE_BID, "node-a", 0, "late")  # never backwards
    assert not grid.apply(E.JOB_EVENT_TYPE_CREATED, "requester", 0, "")  # no row state
    assert not grid.apply(E.JOB_EVENT_TYPE_BID, "", 1, "")  # no node
    change = grid.changes()
    assert change == {
        "cells": [[0, 0, 7, "published"]],
        "summary": {"State": "Completed", "ShardsDone": 1, "ShardsTotal": 2, "Counts": {"Completed": 1}},
        "nodes": ["node-a"],
    }
    assert grid.changes() is None


def test_status_is_kept_when_an_event_has_none_and_repeats_change_nothing():
    grid = ShardGrid(1)
    grid.put("node-a", 0, S.JOB_STATE_TYPE_RUNNING, "pulling")
    grid.snapshot()
    assert not grid.apply(E.JOB_EVENT_TYPE_BID_ACCEPTED, "node-a", 0, "")  # Waiting < Running
    assert not grid.apply(E.JOB_EVENT_TYPE_RUNNING, "node-a", 0, "")  # same state, status kept
    assert grid.changes() is None
    assert grid.apply(E.JOB_EVENT_TYPE_RUNNING, "node-a", 0, "running the image")
    assert grid.changes()["cells"] == [[0, 0, 3, "running the image"]]


@pytest.mark.parametrize("shards", [0, 1])
def test_a_job_without_a_plan_counts_one_shard_and_is_pending_without_rows(shards):
    summary = ShardGrid(shards).summary()
    assert summary == {"State": "Pending", "ShardsDone": 0, "ShardsTotal": 1, "Counts": {}}


def test_counts_follow_cells_that_move_and_shards_done_counts_shards_not_cells():
    grid = ShardGrid(2)
    for node in ("node-a", "node-b"):
        grid.apply(E.JOB_EVENT_TYPE_BID, node, 0, "")
        grid.apply(E.JOB_EVENT_TYPE_RESULTS_PUBLISHED, node, 0, "")
    grid.apply(E.JOB_EVENT_TYPE_BID, "node-a", 1, "")
    summary = grid.summary()
    assert summary["Counts"] == {"Bidding": 1, "Completed": 2}
    assert summary["ShardsDone"] == 1
    grid.apply(E.JOB_EVENT_TYPE_ERROR, "node-a", 1, "boom")
    assert grid.summary()["Counts"] == {"Error": 1, "Completed": 2}
