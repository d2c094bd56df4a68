"""The one progress display of the CLI, on stderr (issue 17).

- stderr is a terminal: a tqdm bar per stage (redrawn in place).
- stderr is a pipe, a file, a CI log: plain lines, at most one every `EVERY` seconds ("indexing: 120/500 images"),
  and a last line when a stage whose bar would stay ends; no carriage-return frame ever reaches it.
- -q or --json: nothing at all.

A command makes one `Progress` (`for_command`), feeds it `update(done, total, desc, ...)` from the library's
progress callbacks, and uses it as a context manager: a stage that ends with an error gets no last line (the error
is the last line)."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click

EVERY = 5.0  # seconds between two plain lines
NOUNS = {"img": "images", "url": "URLs", "step": "steps"}


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    def __init__(self, enabled: bool = True, stream=None, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.bars = enabled and _isatty(self.stream)
        self.every, self.clock = EVERY if every is None else every, clock
        self._stage: tuple | None = None  # (desc, unit, leave) of the stage being shown
        self._bar = None
        self._done = self._total = 0
        self._postfix: dict = {}
        self._last = 0.0  # when the last plain line was written (or the stage began)
        self._written = ""  # the last plain line written

    @classmethod
    def for_command(cls, ctx: click.Context, as_json: bool = False) -> Progress:
        """Shown unless -q or --json."""
        return cls(enabled=not (ctx.find_root().obj["quiet"] or as_json))

    # -- what commands call ----------------------------------------------------------------------------------------
    def update(self, done: int, total: int, desc: str, unit: str = "img", leave: bool = True, **postfix) -> None:
        """`done` of `total` of the stage `desc` (a new desc ends the stage before). `leave`: the stage's bar stays
        on the terminal, and in plain mode its last line is written; a transient stage (leave=False) is followed by
        the command's own output. `postfix`: shown after the count, e.g. errors=3, loss='0.1234' (zeros left out)."""
        if not self.enabled:
            return
        if self._stage != (desc, unit, leave):
            self.finish()
            self._stage, self._last = (desc, unit, leave), self.clock()
        self._done, self._total, self._postfix = done, total, postfix
        if self.bars:
            self._draw(done, total, desc, unit, leave, postfix)
        elif total and self.clock() - self._last >= self.every:
            self._line()

    def callback(self, desc: str, unit: str = "img", leave: bool = False) -> Callable[[int, int], None]:
        """`update` as the (done, total) callback the library's long loops take."""
        return lambda done, total: self.update(done, total, desc, unit=unit, leave=leave)

    def note(self, line: str) -> None:
        """A line of its own (a stage starts, an epoch's scores), shown like the progress: not with -q or --json."""
        if not self.enabled:
            return
        if self._bar is not None:
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)
        else:
            click.echo(line, file=self.stream)

    def finish(self) -> None:
        """End the stage being shown: its bar closed, or its last plain line written (where it stays)."""
        stage, self._stage = self._stage, None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif stage is not None and stage[2] and self._total:
            self._line(stage)

    def abandon(self) -> None:
        """End the stage without a last line (the run failed: its error is what the user reads last)."""
        self._stage = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abandon()

    # -- drawing ---------------------------------------------------------------------------------------------------
    def _draw(self, done, total, desc, unit, leave, postfix) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, file=self.stream, dynamic_ncols=True,
                             disable=total == 0, smoothing=0.1)
        self._bar.update(done - self._bar.n)
        if postfix:
            self._bar.set_postfix(refresh=False, **postfix)

    def _line(self, stage: tuple | None = None) -> None:
        desc, unit, _ = stage or self._stage
        extra = "".join(f", {k} {v}" for k, v in self._postfix.items() if v not in (0, None, ""))
        line = f"{desc}: {self._done}/{self._total} {NOUNS.get(unit, unit)}{extra}"
        if line != self._written:  # (a stage's last line is not written twice)
            click.echo(line, file=self.stream)
            self._written = line
        self._last = self.clock()
