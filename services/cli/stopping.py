"""How a long-running command (`serve`, `dashboard`) learns it should stop: SIGTERM or SIGINT, or, as a
devstack's child, the devstack's pipe closing."""

import asyncio
import os


def stop_when_closed(loop: asyncio.AbstractEventLoop, fd: int, stop: asyncio.Event) -> None:
    """Set `stop` once the pipe `fd` reads end-of-file: its writer (the devstack) is gone, even if it was
    killed (`--stop-when-fd-closes FD`)."""
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            stop.set()

    loop.add_reader(fd, readable)
