"""The client commands: create, list, describe, events (plain grpc.aio stubs over the requester API)."""

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

import grpc

from bacalhau.requester.v1 import requester_service_pb2 as rpb
from bacalhau.requester.v1 import requester_service_pb2_grpc as rgrpc
from bacalhau_grpc.cli import output
from bacalhau_grpc.common.channels import call, open_channel, stream
from bacalhau_grpc.common.errors import BacalhauError, InvalidArgumentError, UnavailableError
from bacalhau_grpc.common.model import jobfile, jobs, pb
from bacalhau_grpc.common.signing import ClientKey, default_directory

DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_API_PORT = 1234
# How often `create --wait` / `events --follow` reconnect after losing the requester.
STREAM_RETRIES = 5

_S = pb.JobStateType

# Go's `create` clears these server-owned fields and names them in a warning (its names, in its order,
# with the ExecutionPlan under the name it carries here).
_SERVER_OWNED = (
    ("ClientID", "client_id"),
    ("CreatedAt", "created_at"),
    ("ExecutionPlan", "execution_plan"),
    ("JobEvents", "events"),
    ("ID", "id"),
    ("LocalJobEvents", "local_events"),
    ("RequesterNodeID", "requester_node_id"),
    ("RequesterPublicKey", "requester_public_key"),
    ("JobState", "state"),
)


class CommandError(Exception):
    """A failure the CLI reports as one "Error: ..." line and exit code 1."""


def add_api_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("requester API")
    group.add_argument(
        "--api-host",
        help=f"the requester's host (env BACALHAU_API_HOST; default {DEFAULT_API_HOST})",
    )
    group.add_argument(
        "--api-port",
        type=int,
        help=f"the requester's port (env BACALHAU_API_PORT; default {DEFAULT_API_PORT})",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for each call to the requester (default 10)",
    )


def api_address(args: argparse.Namespace, environ=os.environ) -> str:
    """Flags win over BACALHAU_API_HOST / BACALHAU_API_PORT, which win over 127.0.0.1:1234."""
    host = args.api_host or environ.get("BACALHAU_API_HOST") or DEFAULT_API_HOST
    port_text = args.api_port if args.api_port is not None else environ.get("BACALHAU_API_PORT")
    try:
        port = int(port_text) if port_text not in (None, "") else DEFAULT_API_PORT
    except ValueError:
        raise CommandError(f"BACALHAU_API_PORT must be a port number, got {port_text!r}") from None
    if not 0 < port <= 65535:
        raise CommandError(f"the API port must be between 1 and 65535, got {port}")
    return f"{host}:{port}"


def client_key(environ=os.environ) -> ClientKey:
    """The user's signing key ($BACALHAU_DIR or ~/.bacalhau-grpc/client_key.pem), created on first use."""
    return ClientKey.load_or_create(default_directory(environ))


def default_client_id(environ=os.environ) -> str:
    """The user's ClientID: the SHA-256 (hex) of the public key they sign their submissions with."""
    return client_key(environ).client_id


# ------------------------------------------------------------------------------------------------ create


def prepare_job(text: bytes, *, warn: TextIO = sys.stderr) -> pb.Job:
    """The job of a job file with Go's `create` defaults filled in and server-owned fields cleared."""
    try:
        job = jobfile.load_job(text)
    except InvalidArgumentError as err:
        raise CommandError(f"the job provided is invalid: {err}") from err
    ignored = [name for name, attr in _SERVER_OWNED if _has_data(job, attr)]
    if ignored:
        print(
            "WARNING: The following fields have data in them and will be ignored on creation: "
            + ", ".join(ignored),
            file=warn,
        )
        for _, attr in _SERVER_OWNED:
            job.ClearField(attr)
    if not job.api_version:
        job.api_version = jobs.api_version_latest()
    if job.deal.concurrency == 0:
        job.deal.concurrency = 1
    if job.spec.verifier == pb.Verifier.VERIFIER_UNSPECIFIED:
        job.spec.verifier = pb.Verifier.VERIFIER_NOOP
    if job.spec.publisher == pb.Publisher.PUBLISHER_UNSPECIFIED:
        job.spec.publisher = pb.Publisher.PUBLISHER_NOOP
    return job


def _has_data(job: pb.Job, attr: str) -> bool:
    value = getattr(job, attr)
    if isinstance(value, str | bytes):
        return bool(value)
    if hasattr(value, "ListFields") and not hasattr(value, "append"):
        return job.HasField(attr) and bool(value.ListFields() or value.ByteSize())
    return len(value) > 0


def read_job_file(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as err:
        raise CommandError(f"cannot read the job file {name}: {err.strerror or err}") from err


async def cmd_create(args: argparse.Namespace) -> int:
    job = prepare_job(read_job_file(args.file))
    address = api_address(args)
    key = client_key()
    async with open_channel(address) as channel:
        stub = rgrpc.RequesterServiceStub(channel)
        request = key.signed_submit_request(job)
        response = await _call(address, stub.SubmitJob, request, args.timeout)
        job_id = response.job.id
        print(job_id, flush=True)
        if not args.wait:
            return 0
        try:
            await asyncio.wait_for(
                _print_events(stub, address, job_id, args.timeout), args.wait_timeout or None
            )
        except TimeoutError:
            raise CommandError(
                f"job {job_id} did not end within {args.wait_timeout:g} s (it keeps running; "
                f"see `bacalhau-grpc describe {job_id}`)"
            ) from None
        info = (await _call(address, stub.GetJob, rpb.GetJobRequest(job_id=job_id), args.timeout)).job
        return report_end(info)


def report_end(info: pb.JobWithInfo) -> int:
    state = output.job_state(info.job_state if info.job_state.nodes else info.job.state)
    print(f"Job {info.job.id} ended: {output.state_name(state)}")
    for line in output.result_lines(info):
        print(line)
    if state != _S.JOB_STATE_TYPE_COMPLETED:
        reasons = [
            row.status
            for row in output.rows(info.job_state if info.job_state.nodes else info.job.state)
            if row.status and row.state == _S.JOB_STATE_TYPE_ERROR
        ]
        detail = f": {reasons[-1]}" if reasons else ""
        raise CommandError(f"job {info.job.id} ended in state {output.state_name(state)}{detail}")
    return 0


async def _print_events(stub: rgrpc.RequesterServiceStub, address: str, job_id: str, timeout: float) -> None:
    async for event in watch_events(stub, address, job_id, timeout):
        print(output.event_line(event), flush=True)


async def watch_events(
    stub: rgrpc.RequesterServiceStub, address: str, job_id: str, timeout: float
) -> AsyncIterator[pb.JobEvent]:
    """Every event of a job, then new ones until the job ends; reconnects from the last one seen."""
    sequence = 0
    failures = 0
    while True:
        request = rpb.WatchJobEventsRequest(job_id=job_id, after_sequence=sequence)
        try:
            async for item in stream(stub.WatchJobEvents, request):
                sequence = max(sequence, item.sequence)
                failures = 0
                yield item.event
            return
        except UnavailableError as err:
            if failures >= STREAM_RETRIES:
                raise _explain(address, err) from None
            failures += 1
            await asyncio.sleep(min(0.2 * 2**failures, 2.0))  # back-off before reconnecting
        except BacalhauError as err:
            raise _explain(address, err) from None


# -------------------------------------------------------------------------------------------------- list


async def cmd_list(args: argparse.Namespace) -> int:
    address = api_address(args)
    sort_by = {"id": rpb.JOB_SORT_BY_ID, "created_at": rpb.JOB_SORT_BY_CREATED_AT}[args.sort_by]
    request = rpb.ListJobsRequest(
        client_id="" if args.all else (args.client_id or default_client_id()),
        id_prefix=args.id_filter or "",
        include_tags=args.include_tag or [],
        exclude_tags=args.exclude_tag or [],
        sort_by=sort_by,
        sort_reverse=args.reverse,
        page_size=args.number,
    )
    async with open_channel(address) as channel:
        stub = rgrpc.RequesterServiceStub(channel)
        response = await _call(address, stub.ListJobs, request, args.timeout)
    job_list = list(response.jobs)[: args.number]
    if args.output == "table":
        text = output.jobs_table(job_list, wide=args.wide, header=not args.hide_header)
    else:
        text = output.jobs_document(job_list, args.output)
    if text:
        print(text)
    return 0


# ---------------------------------------------------------------------------------------------- describe


async def cmd_describe(args: argparse.Namespace) -> int:
    address = api_address(args)
    async with open_channel(address) as channel:
        stub = rgrpc.RequesterServiceStub(channel)
        response = await _call(address, stub.GetJob, rpb.GetJobRequest(job_id=args.id), args.timeout)
    print(jobfile.dump_job(response.job, format="json" if args.json else "yaml").rstrip("\n"))
    return 0


# ------------------------------------------------------------------------------------------------ events


async def cmd_events(args: argparse.Namespace) -> int:
    address = api_address(args)
    async with open_channel(address) as channel:
        stub = rgrpc.RequesterServiceStub(channel)
        if args.follow:
            await _print_events(stub, address, args.id, args.timeout)
            return 0
        token = ""
        while True:
            request = rpb.ListJobEventsRequest(job_id=args.id, page_token=token)
            response = await _call(address, stub.ListJobEvents, request, args.timeout)
            for event in response.events:
                print(output.event_line(event))
            token = response.next_page_token
            if not token:
                return 0


# ----------------------------------------------------------------------------------------------- helpers


async def _call(address: str, method, request, timeout: float):
    try:
        return await call(method, request, timeout=timeout)
    except BacalhauError as err:
        raise _explain(address, err) from None


def _explain(address: str, err: BacalhauError) -> CommandError:
    if isinstance(err, UnavailableError):
        return CommandError(f"cannot reach the requester at {address}: {err}")
    code = getattr(err, "code", None)
    kind = code.name.lower().replace("_", " ") if isinstance(code, grpc.StatusCode) else type(err).__name__
    return CommandError(f"{kind}: {err}")
