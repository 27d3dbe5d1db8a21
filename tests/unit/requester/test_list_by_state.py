"""ListJobs' state filter in the store: a job's summary state (the highest state of its rows, what
`bacalhau-grpc list` shows), filtered while the jobs are read in sort order, with keyset pages that stay
correct when matching jobs are sparse (more than one scan batch between them)."""

import pytest

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.requester.domain.ports import JobQuery, summary_state
from bacalhau_grpc.requester.store import reads
from bacalhau_grpc.requester.store.sqlite import RequesterStore

_S = pb.JobStateType


def make_job(index: int) -> pb.Job:
    job = pb.Job(id=f"job-{index:04d}", client_id="c1", api_version="V1beta1")
    job.created_at.FromMicroseconds(1_000 + index)
    return job


def row(node: str, state: int, shard: int = 0) -> pb.JobShardState:
    return pb.JobShardState(node_id=node, shard_index=shard, state=state)


@pytest.fixture
async def store(tmp_path):
    store = RequesterStore(tmp_path / "r.db")
    await store.open()
    yield store
    await store.close()


def test_summary_state_is_the_highest_row_state():
    state = pb.JobState()
    assert summary_state(state) == 0  # Pending: no rows yet
    state.nodes["a"].shards[0].CopyFrom(row("a", _S.JOB_STATE_TYPE_CANCELLED))
    state.nodes["b"].shards[0].CopyFrom(row("b", _S.JOB_STATE_TYPE_COMPLETED))
    assert summary_state(state) == _S.JOB_STATE_TYPE_COMPLETED


async def test_state_filter_pages_past_sparse_matches(store, monkeypatch):
    # Small scan batches, so that the matching jobs lie several batches apart.
    monkeypatch.setattr(reads, "LIST_SCAN_BATCH", 4)
    errors, completed = [], []
    for i in range(40):
        store.add_job(make_job(i))
        if i % 7 == 3:  # an error on one node, a cancelled bid on another: the job shows Error
            store.put_row(f"job-{i:04d}", row("n1", _S.JOB_STATE_TYPE_ERROR))
            store.put_row(f"job-{i:04d}", row("n2", _S.JOB_STATE_TYPE_CANCELLED))
            errors.append(f"job-{i:04d}")
        elif i % 2 == 0:
            store.put_row(f"job-{i:04d}", row("n1", _S.JOB_STATE_TYPE_COMPLETED))
            completed.append(f"job-{i:04d}")
        elif i % 5 == 0:
            pass  # no rows: Pending
        else:
            store.put_row(f"job-{i:04d}", row("n1", _S.JOB_STATE_TYPE_RUNNING))
    await store.flush()

    def pages(states, size, **query):
        seen, after = [], None
        while True:
            page = store.list_jobs(JobQuery(states=states, page_size=size, after=after, **query))
            seen.append([job.id for job, _ in page])
            if len(page) < size:
                return seen
            after = page[-1][1]

    error_pages = pages([_S.JOB_STATE_TYPE_ERROR], 2)
    assert [job for page in error_pages for job in page] == errors
    assert all(len(page) == 2 for page in error_pages[:-1])
    by_id = pages([_S.JOB_STATE_TYPE_COMPLETED], 3, sort_by="id", reverse=True)
    assert [job for page in by_id for job in page] == completed[::-1]
    both = pages([_S.JOB_STATE_TYPE_COMPLETED, _S.JOB_STATE_TYPE_ERROR], 5)
    assert [job for page in both for job in page] == sorted(errors + completed)
    pending = pages([0], 100)
    assert pending == [["job-0005", "job-0015", "job-0025", "job-0035"]]
    # Each job comes with its rows, as without a filter.
    (first, _), *_ = store.list_jobs(JobQuery(states=[_S.JOB_STATE_TYPE_ERROR], page_size=1))
    assert set(first.state.nodes) == {"n1", "n2"}
