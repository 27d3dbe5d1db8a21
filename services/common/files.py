"""Small file helpers shared by the services."""

import os
import secrets
from pathlib import Path


def write_atomically(path: Path, data: bytes | bytearray | str, *, private: bool = False) -> None:
    """Writes `data` (a str as UTF-8) to `path` so that readers find the old file or the whole new one,
    never a part: it goes to a temporary file in the same folder, which then replaces `path`. The file
    gets a new file's permissions (0666 less the umask), or 0600 when `private`. The folder must exist;
    OSError when the write fails (the temporary file is removed)."""
    if isinstance(data, str):
        data = data.encode()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
