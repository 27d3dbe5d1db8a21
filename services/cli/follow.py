"""Following a submitted job for `--wait` (Bacalhau v0.3's progress printout, without its bugs): one line
per new lifecycle step, a shard counter for sharded jobs, and once every shard ended the results per node;
also whether the job completed and, if not, why."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from bacalhau_grpc.cli import output
from bacalhau_grpc.common.model import jobs, pb
from bacalhau_grpc.sdk import sdk_types

_E = sdk_types.JobEventType
_S = pb.JobStateType

# The lifecycle steps the --wait printout names (v0.3's eventsWorthPrinting), and those that are failures.
STEP_MESSAGES = {
    _E.CREATED: "Creating job for submission",
    _E.BID: "Finding node(s) for the job",
    _E.BID_ACCEPTED: "Node accepted the job",
    _E.RUNNING: "Node started running the job",
    _E.COMPUTE_ERROR: "Error while executing the job.",
    _E.RESULTS_PROPOSED: "Job finished, verifying results",
    _E.RESULTS_REJECTED: "Results failed verification.",
    _E.RESULTS_ACCEPTED: "Results accepted, publishing",
    _E.ERROR: "Unknown error while running job.",
}
FAILURE_STEPS = frozenset({_E.COMPUTE_ERROR, _E.RESULTS_REJECTED, _E.ERROR})
STEP_WIDTH = max(len(message) for message in STEP_MESSAGES.values())
# Without --node-details, at most this many (node, shard) lines in the results summary.
SUMMARY_ROWS = 20
# How often a sharded job's progress line is repeated when stdout is not a terminal.
PROGRESS_INTERVAL = 5.0
STREAM_HEAD_LINES = 20

# ------------------------------------------------------------------------------------ following a job


@dataclass
class ShardProgress:
    """Which shards have ended, from the job's events: a shard ends with an Error event, or once every
    node whose results were accepted has published them (or failed to)."""

    total: int
    accepted: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    settled: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    published: set[int] = field(default_factory=set)
    ended: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)

    def update(self, event: sdk_types.JobEvent) -> bool:
        """Takes an event in; True when a shard ended with it."""
        shard = event.shard_index
        if shard in self.ended:
            return False
        name = event.event_name
        if name == _E.ERROR:
            self.failed.add(shard)
        elif name == _E.RESULTS_ACCEPTED:
            self.accepted[shard].add(event.target_node_id)
            return False
        elif name == _E.RESULTS_PUBLISHED:
            self.published.add(shard)
            self.settled[shard].add(event.source_node_id)
        elif name == _E.COMPUTE_ERROR and event.source_node_id in self.accepted[shard]:
            self.settled[shard].add(event.source_node_id)
        else:
            return False
        if shard not in self.failed and not (
            shard in self.published and self.accepted[shard] <= self.settled[shard]
        ):
            return False
        self.ended.add(shard)
        return True

    def text(self) -> str:
        failed = f", {len(self.failed)} failed" if self.failed else ""
        return f"Shards: {len(self.ended)}/{self.total} done{failed}"


class Printer:
    """The --wait printout: one line per new lifecycle step, and a shard counter for sharded jobs (updated
    in place on a terminal, a line now and then otherwise)."""

    def __init__(self, *, quiet: bool, total_shards: int, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.quiet = quiet
        self.seen: set[int] = set()
        self.progress = ShardProgress(total_shards) if total_shards > 1 else None
        self.tty = self.out.isatty()
        self._progress_shown = False
        self._last_progress = 0.0

    def event(self, event: sdk_types.JobEvent) -> None:
        name = event.event_name
        ended = self.progress is not None and self.progress.update(event)
        if self.quiet:
            return
        if name in STEP_MESSAGES and name not in self.seen:
            self.seen.add(name)
            self._clear_progress()
            print(step_line(event), file=self.out, flush=True)
            if self.progress is not None and self.tty:
                self._show_progress()
        elif ended:
            self._show_progress()

    def _show_progress(self) -> None:
        assert self.progress is not None
        text = f"\t{self.progress.text()}"
        now = time.monotonic()
        done = len(self.progress.ended) == self.progress.total
        if self.tty:  # redrawn in place
            print(f"\r\033[K{text}", end="", file=self.out, flush=True)
            self._progress_shown = True
        elif done or now - self._last_progress >= PROGRESS_INTERVAL:  # a line now and then
            print(text, file=self.out, flush=True)
            self._last_progress = now

    def _clear_progress(self) -> None:
        if self._progress_shown:
            print("\r\033[K", end="", file=self.out)
            self._progress_shown = False

    def close(self) -> None:
        if self.quiet:
            return
        if self.progress is not None and self._progress_shown:
            print(file=self.out)
            self._progress_shown = False
        print(file=self.out, flush=True)


def step_line(event: sdk_types.JobEvent) -> str:
    """v0.3's line for a lifecycle step ("\\t       Creating job for submission ... done ✅"); a failure
    says so, with the reason the event carries."""
    message = STEP_MESSAGES[event.event_name]
    if event.event_name not in FAILURE_STEPS:
        return f"\t{message:>{STEP_WIDTH}} ... done ✅"
    where = output.short_node_id(event.target_node_id or event.source_node_id)
    reason = f" ({where}: {event.status})" if event.status else ""
    return f"\t{message:>{STEP_WIDTH}} ... failed ❌{reason}"


# ------------------------------------------------------------------------------------------ the results


@dataclass
class Outcome:
    completed: bool
    reason: str = ""


def _rows(info: pb.JobWithInfo) -> list[pb.JobShardState]:
    return output.rows(info.job_state if info.job_state.nodes else info.job.state)


def job_outcome(info: pb.JobWithInfo) -> Outcome:
    """Completed when every shard has a completed (published) result; otherwise why not, from the
    requester's own row (the shard's failure) or else the nodes' rows."""
    job = info.job
    total = max(job.execution_plan.total_shards, 1)
    by_shard: dict[int, list[pb.JobShardState]] = defaultdict(list)
    for row in _rows(info):
        by_shard[row.shard_index].append(row)
    failed = [
        shard
        for shard in range(total)
        if not any(r.state == _S.JOB_STATE_TYPE_COMPLETED for r in by_shard[shard])
    ]
    if not failed:
        return Outcome(True)
    first = failed[0]
    reason = _shard_failure(by_shard[first], job.requester_node_id)
    if total == 1:
        return Outcome(False, f"job {job.id} failed: {reason}")
    return Outcome(
        False,
        f"job {job.id} failed: {len(failed)} of {total} shards did not complete; shard {first}: {reason}",
    )


def _shard_failure(rows: Sequence[pb.JobShardState], requester_node_id: str) -> str:
    ranked = sorted(
        (r for r in rows if r.state in (_S.JOB_STATE_TYPE_ERROR, _S.JOB_STATE_TYPE_CANCELLED)),
        key=lambda r: (r.node_id != requester_node_id, r.state != _S.JOB_STATE_TYPE_ERROR, not r.status),
    )
    if not ranked:
        state = max((r.state for r in rows), default=0)
        return f"it ended in state {output.state_name(state)}"
    row = ranked[0]
    if not row.status:
        return f"it ended in state {output.state_name(row.state)}"
    return row.status if row.state == _S.JOB_STATE_TYPE_ERROR else f"cancelled: {row.status}"


def results_by_node(info: pb.JobWithInfo, *, details: bool) -> list[str]:
    """ "Job Results By Node:" and, per node and shard, what it did: every row in v0.3's layout with
    `details`, else one line per row that ran (at most SUMMARY_ROWS)."""
    lines = ["Job Results By Node:"]
    rows = _rows(info)
    if details:
        node = None
        for row in rows:
            if row.node_id != node:
                node = row.node_id
                lines.append(f"Node {output.short_node_id(node)}:")
            lines.extend(_row_details(row))
        return lines
    ran = [
        r
        for r in rows
        if r.HasField("run_output") or r.state in (_S.JOB_STATE_TYPE_ERROR, _S.JOB_STATE_TYPE_COMPLETED)
    ]
    for row in ran[:SUMMARY_ROWS]:
        lines.append(_row_summary(row))
    if len(ran) > SUMMARY_ROWS:
        lines.append(f"  ... and {len(ran) - SUMMARY_ROWS} more (--node-details shows every one)")
    return lines


def _row_summary(row: pb.JobShardState) -> str:
    bits = [output.state_name(row.state)]
    if row.HasField("run_output"):
        bits.append(f"exit code {jobs.run_exit_code(row.run_output)}")
    if row.published_result.cid:
        bits.append(f"results {row.published_result.cid}")
    if row.status and row.state != _S.JOB_STATE_TYPE_COMPLETED:
        bits.append(row.status)
    return f"  Node {output.short_node_id(row.node_id)}, shard {row.shard_index}: {', '.join(bits)}"


def _row_details(row: pb.JobShardState) -> list[str]:
    status = output.state_name(row.state)
    if row.status and row.state != _S.JOB_STATE_TYPE_COMPLETED:
        status += f" ({row.status})"
    lines = [f"  Shard {row.shard_index}:", f"    Status: {status}"]
    if not row.HasField("run_output"):
        lines.append("    No RunOutput for this shard")
    else:
        result = row.run_output
        lines.append(f"    Container Exit Code: {jobs.run_exit_code(result)}")
        lines += _stream("Stdout", result.stdout, result.stdout_truncated)
        lines += _stream("Stderr", result.stderr, result.stderr_truncated)
        if result.error_msg:
            lines.append(f"    Runner Error: {result.error_msg}")
    if row.published_result.ListFields():
        published = row.published_result.cid or output.storage_text(row.published_result)
        lines.append(f"    Results CID: {published}")
    return lines


def _stream(name: str, text: str, truncated: bool) -> list[str]:
    if not text:
        return [f"    {name}: <NONE>"]
    head = text.splitlines()
    cut = len(head) > STREAM_HEAD_LINES
    note = " (truncated: the first 2 KiB)" if truncated else ""
    lines = [f"    {name}{note}:", *(f"      {line}" for line in head[:STREAM_HEAD_LINES])]
    if cut:
        lines.append(f"      ... ({len(head) - STREAM_HEAD_LINES} more lines)")
    return lines


def fail(line: str) -> int:
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)
    return 1


def report_end(info: pb.JobWithInfo) -> int:
    """The results summary of an ended job (with details); 0 when it completed, else 1 with the reason on
    stderr."""
    print("\n".join(results_by_node(info, details=True)))
    end = job_outcome(info)
    return 0 if end.completed else fail(f"Error: {end.reason}")
