"""The noop executor: knobs, the 2 KiB summary, timeouts and cancellation."""

import asyncio
import time

import pytest

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.compute.domain.executions import new_execution
from bacalhau_grpc.compute.domain.ports import run_with_timeout
from bacalhau_grpc.compute.domain.runs import (
    DEFAULT_RUN_TIMEOUT,
    SUMMARY_BYTES,
    ExecutorError,
    RunContext,
    RunResult,
    run_timeout,
)
from bacalhau_grpc.compute.executors.noop import NoopExecutor
from tests.unit.compute.support import make_job


def execution(timeout: float = 0.0) -> RunContext:
    job = make_job(timeout=timeout)
    return RunContext(
        new_execution(job, 0, pb.ResourceUsageData()), node_id="node-1", timeout=run_timeout(job.spec)
    )


async def test_the_noop_executor_returns_its_knobs():
    executor = NoopExecutor(stdout="hello\n", stderr="warn\n", exit_code=3)
    assert executor.engine == pb.Engine.ENGINE_NOOP and executor.is_installed()
    result = await executor.run(execution())
    assert (result.stdout, result.stderr, result.exit_code) == (b"hello\n", b"warn\n", 3)
    summary = result.summary()
    assert summary.stdout == "hello\n" and summary.stderr == "warn\n"
    assert summary.HasField("exit_code") and summary.exit_code == 3
    assert not summary.stdout_truncated and not summary.stderr_truncated


async def test_the_default_noop_result_is_empty_with_exit_code_zero():
    summary = (await NoopExecutor().run(execution())).summary()
    assert summary == pb.RunCommandResult(exit_code=0)


def test_the_summary_holds_the_first_2_kib_and_says_so():
    result = RunResult(stdout=b"x" * (SUMMARY_BYTES + 1), stderr=b"y" * SUMMARY_BYTES, exit_code=0)
    summary = result.summary()
    assert summary.stdout == "x" * SUMMARY_BYTES and summary.stdout_truncated
    assert summary.stderr == "y" * SUMMARY_BYTES and not summary.stderr_truncated


def test_a_character_cut_in_half_by_the_limit_is_dropped():
    text = ("a" * (SUMMARY_BYTES - 1) + "é" + "tail").encode()  # "é" is 2 bytes, cut after the first
    summary = RunResult(stdout=text, stderr=b"", exit_code=0).summary()
    assert summary.stdout == "a" * (SUMMARY_BYTES - 1) and summary.stdout_truncated
    whole = ("a" * (SUMMARY_BYTES - 2) + "é" + "tail").encode()  # "é" ends exactly at the limit
    assert (
        RunResult(stdout=whole, stderr=b"", exit_code=0).summary().stdout == "a" * (SUMMARY_BYTES - 2) + "é"
    )


def test_invalid_utf8_shows_as_replacement_characters():
    summary = RunResult(stdout=b"ok\xff", stderr=b"", exit_code=0).summary()
    assert summary.stdout == "ok\ufffd"


async def test_the_delay_knob_makes_the_run_last():
    started = time.monotonic()
    result = await run_with_timeout(NoopExecutor(stdout="done", delay=0.2), execution())
    assert time.monotonic() - started >= 0.2
    assert result.stdout == b"done"


def test_the_run_timeout_is_the_job_timeout_or_600s():
    assert run_timeout(make_job(timeout=2.5).spec) == 2.5
    assert run_timeout(make_job(timeout=0).spec) == DEFAULT_RUN_TIMEOUT == 600.0


async def test_a_run_longer_than_the_job_timeout_fails():
    started = time.monotonic()
    with pytest.raises(ExecutorError, match=r"^execution timed out after 0.2s$"):
        await run_with_timeout(NoopExecutor(delay=30), execution(timeout=0.2))
    assert time.monotonic() - started < 5


async def test_a_run_is_cancellable():
    executor = NoopExecutor(delay=30)
    task = asyncio.create_task(run_with_timeout(executor, execution()))
    deadline = time.monotonic() + 5
    while executor.runs == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
