"""Building job events and local events the way every requester event is built.

Every event carries api_version "V1beta1", its job ID, its shard, the job's client ID and an event time
in whole microseconds (UTC).
"""

from bacalhau_grpc.common.model import jobs, pb

API_VERSION = jobs.api_version_latest()
E = pb.JobEventType
L = pb.JobLocalEventType


def to_micros(now: float) -> int:
    """Whole microseconds since the epoch for a `time.time()` reading."""
    return round(now * 1_000_000)


def new_event(
    event_name: int,
    *,
    job_id: str,
    now: float,
    shard_index: int = 0,
    client_id: str = "",
    source_node_id: str = "",
    target_node_id: str = "",
    status: str = "",
) -> pb.JobEvent:
    event = pb.JobEvent(
        api_version=API_VERSION,
        job_id=job_id,
        shard_index=shard_index,
        client_id=client_id,
        source_node_id=source_node_id,
        target_node_id=target_node_id,
        # The stub wants the enum wrapper type; protobuf takes any int for an enum field.
        event_name=event_name,  # type: ignore[arg-type]
        status=status,
    )
    event.event_time.FromMicroseconds(to_micros(now))
    return event


def created_event(job: pb.Job, *, now: float) -> pb.JobEvent:
    """The Created event of a job: who made it, for whom, and its spec, deal and plan."""
    event = new_event(
        E.JOB_EVENT_TYPE_CREATED,
        job_id=job.id,
        now=now,
        client_id=job.client_id,
        source_node_id=job.requester_node_id,
    )
    event.spec.CopyFrom(job.spec)
    event.deal.CopyFrom(job.deal)
    event.job_execution_plan.CopyFrom(job.execution_plan)
    return event


def new_local_event(
    event_name: int, *, job_id: str, shard_index: int, target_node_id: str = ""
) -> pb.JobLocalEvent:
    return pb.JobLocalEvent(
        # The stub wants the enum wrapper type; protobuf takes any int for an enum field.
        event_name=event_name,  # type: ignore[arg-type]
        job_id=job_id,
        shard_index=shard_index,
        target_node_id=target_node_id,
    )
