"""Failpoints, for tests only: named points in the code where a process can be made to die on purpose,
to check what a crash at exactly that point leaves behind (tests/e2e kill a requester right after a job
is committed and before the client hears of it).

`hit(name)` ends the process at once (`os._exit(137)`, as a SIGKILL would leave it: no cleanup, no
reply, nothing flushed) when `name` is one of the comma-separated names in the environment variable
`BACALHAU_FAILPOINTS`, read once when this module is imported; otherwise it does nothing (one set
lookup). Never set it in production.

The failpoints: "submit-after-commit" (`Requester.submit`, once the new job is durable) and
"compute-result-accepted" (`ComputeNode.result_accepted`, as the node hears its results were accepted,
before it records or publishes anything).
"""

import os

ENV = "BACALHAU_FAILPOINTS"
EXIT_CODE = 137

ARMED: frozenset[str] = frozenset(name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip())


def hit(name: str) -> None:
    """Exit the process now (code 137) when the failpoint `name` is armed."""
    if name in ARMED:
        os.write(2, f"failpoint {name}: exiting with code {EXIT_CODE} ({ENV})\n".encode())
        os._exit(EXIT_CODE)
