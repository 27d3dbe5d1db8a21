"""Progress bars of downloads and uploads on a terminal (tqdm): the size done and the total, the rate and
the time left, on stderr. `bar()` gives none when stderr is not a terminal (nothing extra is printed then),
so a caller passes what it returns straight to the SDK's `on_progress`."""

import os
import sys
from types import TracebackType

from tqdm import tqdm


class Bar:
    """An `on_progress(done, total)` callback drawing one bar; the bar appears on the first call and is left
    on the terminal, complete, when the `with` block ends."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            # a terminal that reports no width (an unsized pseudo-terminal) gets 80 columns
            sized = _columns() > 0
            self._bar = tqdm(
                total=total,
                desc=self.description,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                dynamic_ncols=sized,
                ncols=None if sized else 80,
                leave=True,
                bar_format="{l_bar}{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}, {rate_fmt}]",
            )
        if total != self._bar.total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def __enter__(self) -> "Bar":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0


def bar(description: str, *, quiet: bool = False) -> Bar | None:
    """A Bar when stderr is a terminal (and not `quiet`), else None."""
    if quiet or not sys.stderr.isatty():
        return None
    return Bar(description)
