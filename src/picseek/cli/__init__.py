"""The command line: parse options -> one library call -> print. The only place that draws progress bars;
errors are translated here, once, into one line on stderr and an exit code.

The group and the error edge live here; each module of this package adds its commands to `cli`."""
from __future__ import annotations

import io
import logging
import os
import sys

import click

from .. import __version__
from ..errors import PicseekError
from ..paths import shown, terminal_safe
from .options import library_option, quiet_option, share_global_options, store_option, verbose_option


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
                   precision=ctx.obj.get("precision"))


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


def fail(message: str, code: int = 1, prefix: str = "error: "):
    """The one way the CLI ends with a message: one line on stderr ('picseek: error: ...'), then exit `code`."""
    click.echo(f"picseek: {prefix}{message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    _safe_streams()
    try:
        cli.main(args=argv, prog_name="picseek", standalone_mode=False)
    except PicseekError as exc:
        fail(shown(str(exc)), exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        fail("interrupted (run the same command again to continue)", 130, prefix="")
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:  # the last resort (library files are LibraryIOErrors by now; EPIPE is click's): one line
        name = f"{shown(os.fsdecode(exc.filename))}: " if isinstance(exc.filename, (str, bytes)) else ""
        fail(f"{name}{exc.strerror or exc}")


# Each module registers its commands, in the order docs/cli.md lists them (the search commands before learn's).
from . import core, query  # noqa: E402,F401,I001
from . import learn, metadata, scale, serve  # noqa: E402,F401,I001

share_global_options(cli, _setup_logging)  # (after the commands are registered)

if __name__ == "__main__":  # pragma: no cover
    main()
