"""Node IDs: one rule for every node (requester, compute, verifier), whatever gives the ID (a flag, the
ID file in its data dir, a certificate, a registration or a report): 1 to 128 letters, digits, '.', '_'
and '-', not '.' or '..'. An ID becomes a file name (`get` downloads into `<node-id>` folders), a URI
path segment (certificate identities) and a label, so nothing else is allowed.

The ID file: a node without a configured ID keeps the one it made up in `<data-dir>/node_id`, so it is the
same node after a restart."""

import re
from pathlib import Path

from bacalhau_grpc.common.errors import InvalidArgumentError
from bacalhau_grpc.common.files import write_atomically

# The shape of an ID that becomes a name (a node ID; a submission's client-chosen ID has the same one).
ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
NODE_ID_PATTERN = ID_PATTERN
FILE_NAME = "node_id"


def node_id_problem(node_id: object) -> str | None:
    """What is wrong with `node_id` as a node ID, or None."""
    if isinstance(node_id, str) and NODE_ID_PATTERN.fullmatch(node_id) and node_id not in (".", ".."):
        return None
    shown = repr(node_id)
    if len(shown) > 140:
        shown = f"{shown[:100]}... ({len(shown) - 2} characters)"
    return (
        f"bad node ID {shown}: a node ID is 1 to 128 characters of letters, digits, '.', '_' and '-' "
        "(not '.' or '..')"
    )


def check_node_id(node_id: object, *, field: str = "node_id") -> str:
    """`node_id`, or InvalidArgumentError naming `field` and the rule."""
    problem = node_id_problem(node_id)
    if problem is not None:
        raise InvalidArgumentError(problem, field=field)
    return node_id  # type: ignore[return-value]


def saved_node_id(data_dir: Path) -> str:
    """The ID kept in `data_dir`, "" when none is; InvalidArgumentError when the file holds no valid ID."""
    path = data_dir / FILE_NAME
    try:
        saved = path.read_text().strip()
    except FileNotFoundError:
        return ""
    if node_id_problem(saved) is not None:
        raise InvalidArgumentError(f"{path} holds no valid node ID: delete it or set one", field="node_id")
    return saved


def resolve_node_id(data_dir: Path, configured: str, new: str) -> str:
    """The configured ID (checked), else the one kept in `data_dir`, else `new`; the result is kept in
    `data_dir` (written atomically) when the file did not hold it."""
    if configured:
        check_node_id(configured)
    saved = saved_node_id(data_dir)
    node_id = configured or saved or new
    if node_id != saved:
        data_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(data_dir / FILE_NAME, node_id + "\n")
    return node_id
