"""Go's small job helpers and constants from `pkg/model` (job.go, utils.go, tracer.go, command.go,
job_selection.go, apiversion.go), over the protobuf messages."""

from bacalhau_grpc.common.model import enums, pb

# tracer.go: the span attributes that carry a node's and a job's ID.
TRACER_ATTRIBUTE_NAME_NODE_ID = "nodeid"
TRACER_ATTRIBUTE_NAME_JOB_ID = "jobid"
# The length of an ID's short form, as shown by the CLI.
SHORT_ID_LENGTH = 8
# apiversion.go: APIVersionLatest() is the last value of the iota list.
API_VERSION_LATEST = pb.APIVersion.API_VERSION_V1BETA1
# command.go: the exit code of a program that has not exited (or never ran).
EXIT_CODE_UNSET = -1


def api_version_latest() -> str:
    """The latest model version's text form, "V1beta1" (Go `APIVersionLatest().String()`)."""
    return enums.API_VERSION.name(API_VERSION_LATEST)


def get_shard_id(job_id: str, shard_index: int) -> str:
    """The ID of one shard of a job, `<jobID>:<index>` (Go `GetShardID`)."""
    return f"{job_id}:{shard_index:d}"


def short_id(id_: str) -> str:
    """The first `SHORT_ID_LENGTH` characters of an ID; the whole ID when it is shorter.

    Go slices bytes; IDs are ASCII (UUIDs, peer IDs), so counting characters gives the same result.
    """
    return id_[:SHORT_ID_LENGTH]


def new_job() -> pb.Job:
    """A blank job written in the latest model version (Go `NewJob`).

    Go v0.3's `NewJob` sets only `APIVersion` (to `APIVersionLatest().String()`); it leaves the Deal
    at its zero value (Concurrency 0), so this does too. Spec, Deal and ExecutionPlan stay unset: a
    proto message reads an unset sub-message as its zero value, as Go's value structs are.
    """
    return pb.Job(api_version=api_version_latest())


def new_default_job_selection_policy() -> pb.JobSelectionPolicy:
    """Go's `NewDefaultJobSelectionPolicy`: the zero policy, i.e. Local data only, no probes."""
    return pb.JobSelectionPolicy(locality=pb.JobSelectionDataLocality.JOB_SELECTION_DATA_LOCALITY_LOCAL)


def new_run_command_result() -> pb.RunCommandResult:
    """Go's `NewRunCommandResult`: empty output and exit code -1 (the program has not exited)."""
    return pb.RunCommandResult(exit_code=EXIT_CODE_UNSET)


def run_exit_code(result: pb.RunCommandResult) -> int:
    """The program's exit code; -1 when the result carries none (Go's default from NewRunCommandResult)."""
    return result.exit_code if result.HasField("exit_code") else EXIT_CODE_UNSET
