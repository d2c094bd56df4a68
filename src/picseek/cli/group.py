"""The CLI's group and what every command module shares: the global options, logging, safe output streams, opening
the library, and the one way to end with a message (`fail`). Command modules import this, never the package."""
from __future__ import annotations

import io
import logging
import os
import sys

import click

from .._version import __version__
from ..errors import CANNOT_GO_ON, NOTHING_FOUND
from ..paths import shown, terminal_safe
from .options import library_option, quiet_option, store_option, verbose_option


class _Formatter(logging.Formatter):
    """One line per record: a file name with a line break or an escape sequence in it is shown escaped."""

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        message = shown(record.getMessage())
        return f"picseek: {level}: {message}" if record.levelno >= logging.WARNING else f"picseek: {message}"


class _SafeStream(io.TextIOBase):
    """stdout/stderr as the CLI writes them: every string through paths.terminal_safe, so no control sequence or
    undecodable byte from a file name, imported metadata or a message reaches the terminal (bytes written to
    `.buffer`, as `--null` does, pass unchanged)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(terminal_safe(text))
        return len(text)

    def __getattr__(self, name):  # encoding, errors, buffer, fileno, isatty, ... of the real stream
        return getattr(self._stream, name)

    @property
    def encoding(self) -> str:  # (io.TextIOBase's own would say None: progress bars would fall back to ASCII)
        return self._stream.encoding

    @property
    def errors(self) -> str | None:
        return self._stream.errors

    def flush(self) -> None:
        self._stream.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()


def _safe_streams() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _SafeStream):
            setattr(sys, name, _SafeStream(stream))


def _setup_logging(verbose: int, quiet: bool) -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("picseek")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose > 1 else
                  logging.INFO if verbose else logging.WARNING)


def _open(ctx: click.Context, model: str | None = None, create: bool = False):
    from ..library import Library

    return Library(ctx.obj["library"], model=model, create=create, store=ctx.obj.get("store"),
                   precision=ctx.obj.get("precision"), device=ctx.obj.get("device"), runtime=ctx.obj.get("runtime"),
                   image_model=ctx.obj.get("image_model"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@library_option
@store_option
@verbose_option
@quiet_option
@click.version_option(__version__, prog_name="picseek")
@click.pass_context
def cli(ctx: click.Context, library: str | None, store: str | None, verbose: int, quiet: bool) -> None:
    """picseek: find images by what they show.

    Index folders of photos once, then search them with words, an example image, or both.
    """
    _setup_logging(verbose, quiet)
    ctx.obj = {"library": library, "store": store, "quiet": quiet, "verbose": verbose}


def nothing_found() -> None:
    """End a command that found nothing (grep's rule: status 1; errors.EXIT_CODES)."""
    sys.exit(NOTHING_FOUND)


def fail(message: str, code: int = CANNOT_GO_ON, prefix: str = "error: "):
    """The one way the CLI ends with a message: one line on stderr ('picseek: error: ...'), then exit `code`."""
    click.echo(f"picseek: {prefix}{message}", err=True)
    sys.exit(code)


