"""Who may read a job: the requester's job visibility (`--job-visibility`), decided from the verified caller.

- `public` (the default, as in Bacalhau): anyone reads any job (get, list, events, logs, results), signed
  in or anonymous;
- `owner`: a caller reads only the jobs its ClientID submitted. Another client's job is not found (its
  existence is not revealed: prefixes match only the caller's own jobs, listings hold only them), and an
  anonymous caller is refused (UNAUTHENTICATED).

Changing a job (cancelling it) always needs the caller's identity and is its owner's alone, whatever the
visibility. The caller's ClientID comes from its verified signature (`common.caller`), never from a
request field.
"""

from bacalhau_grpc.common.errors import UnauthenticatedError

PUBLIC = "public"
OWNER = "owner"
JOB_VISIBILITIES = (PUBLIC, OWNER)

IDENTITY_HINT = (
    "sign the call with your client key, as the SDK and the CLI do (`bacalhau-grpc id` shows your ClientID)"
)


def check_visibility(visibility: str) -> str:
    if visibility not in JOB_VISIBILITIES:
        raise ValueError(f"job visibility must be one of {', '.join(JOB_VISIBILITIES)}, not {visibility!r}")
    return visibility


def reader_scope(visibility: str, caller: str | None) -> str | None:
    """Whose jobs `caller` (a verified ClientID, None: anonymous) may read: None for everyone's, else the
    one ClientID. UnauthenticatedError for an anonymous caller when jobs are visible to their owner only."""
    if visibility == PUBLIC:
        return None
    if not caller:
        raise UnauthenticatedError(
            f"this requester shows jobs to their owners only (job visibility {OWNER}): reading a job needs "
            f"your identity: {IDENTITY_HINT}"
        )
    return caller


def changer(caller: str | None) -> str:
    """The ClientID of a caller changing a job (cancelling it); UnauthenticatedError when anonymous."""
    if not caller:
        raise UnauthenticatedError(f"cancelling a job needs your identity: {IDENTITY_HINT}")
    return caller
