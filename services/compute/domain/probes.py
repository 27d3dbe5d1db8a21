"""External bid probes (v0.3 `--job-selection-probe-http` / `--job-selection-probe-exec` bid
strategies).

Both are asked about a job with the same JSON document, v0.3's:

    {"node_id": "...", "job_id": "...", "spec": {...the job file's Spec...},
     "execution_plan": {"ShardsTotal": N}}

* HTTP: a POST of the document (`Content-Type: application/json`); status 200 is a yes, any other
  status a no ("url `U` returned 503 status code"). Unlike v0.3 (where a connection error crashed
  the node), an unreachable URL or one that does not answer in time is a no with the cause
  ("url `U` could not be reached: ..."); nothing escapes.
* Exec: `bash -c <command>` with the document on stdin and in `BACALHAU_JOB_SELECTION_PROBE_DATA`;
  exit code 0 is a yes, any other a no ("command `C` returned non-zero exit code 3"). As in v0.3 the
  child gets no other variable of the node's environment except `PATH` (kept so that commands such
  as `grep` or `jq` are found). It runs in its own process group; one that outlives its time is
  killed with all its children and the job refused. A job too large for one environment variable
  (Linux: 128 KiB) cannot be run: it is refused with that cause.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal

import aiohttp

from bacalhau_grpc.common.model import pb
from bacalhau_grpc.common.model.jobfile import message_to_dict

log = logging.getLogger(__name__)

PROBE_DATA_ENV = "BACALHAU_JOB_SELECTION_PROBE_DATA"
# Seconds a probe may take when the node's settings do not say.
DEFAULT_PROBE_TIMEOUT = 5.0
# The most of a refusing command's stderr that is logged.
_STDERR_LOGGED = 2000


def probe_payload(node_id: str, job: pb.Job) -> str:
    """The JSON document both probes receive (compact, as Go's json.Marshal)."""
    document = {
        "node_id": node_id,
        "job_id": job.id,
        "spec": message_to_dict(job.spec),
        "execution_plan": {"ShardsTotal": job.execution_plan.total_shards},
    }
    return json.dumps(document, separators=(",", ":"))


def _cause(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def ask_http(url: str, payload: str, timeout: float = DEFAULT_PROBE_TIMEOUT) -> str | None:
    """POSTs `payload` to `url`: None for a 200 answer, else the reason for refusing."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(url, data=payload, headers={"Content-Type": "application/json"}) as response,
        ):
            status = response.status
    except TimeoutError:
        return f"url `{url}` did not answer within {timeout:g}s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return f"url `{url}` could not be reached: {_cause(exc)}"
    if status != 200:
        return f"url `{url}` returned {status} status code"
    return None


async def ask_command(command: str, payload: str, timeout: float = DEFAULT_PROBE_TIMEOUT) -> str | None:
    """Runs `bash -c command` with `payload` on stdin and in the environment: None for exit code 0,
    else the reason for refusing. A command still running after `timeout` seconds is killed."""
    env = {PROBE_DATA_ENV: payload, "PATH": os.environ.get("PATH", os.defpath)}
    try:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return f"command `{command}` could not be run: {_cause(exc)}"
    try:
        _, stderr = await asyncio.wait_for(process.communicate(payload.encode()), timeout)
    except TimeoutError:
        await _kill(process)
        return f"command `{command}` did not finish within {timeout:g}s"
    except BaseException:
        await _kill(process)  # cancelled with the bid: leave no process behind
        raise
    if process.returncode != 0:
        log.info(
            "probe command %r exited with %s: %s",
            command,
            process.returncode,
            stderr[-_STDERR_LOGGED:].decode(errors="replace").strip(),
        )
        return f"command `{command}` returned non-zero exit code {process.returncode}"
    return None


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Kills the process and everything it started (its own process group), then reaps it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
