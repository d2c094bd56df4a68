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
@click.option("--library", "-L", metavar="PATH", help="Library folder (env PICSEEK_LIBRARY; default: user data dir).")
@click.option("--store", metavar="URL", help="Keep vectors and metadata in ChromaDB instead of the built-in store: "
              "chroma://HOST:PORT/COLLECTION or chroma:///PATH?collection=NAME (env PICSEEK_STORE; "
              "docs/deployment.md).")
@click.option("--verbose", "-v", count=True, help="More log output (-vv for debug).")
@click.option("--quiet", "-q", is_flag=True, help="Only errors on stderr.")
@click.version_option(__version__, prog_name="picseek")
@click.pass_context
def cli(ctx: click.Context, library: str | None, store: str | None, verbose: int, quiet: bool) -> None:
    """picseek: find images by what they show.

    Index folders of photos once, then search them with words, an example image, or both.
    """
    _setup_logging(verbose, quiet)
    ctx.obj = {"library": library, "store": store, "quiet": quiet, "verbose": verbose}


def main(argv: list[str] | None = None) -> None:
    _safe_streams()
    try:
        cli.main(args=argv, prog_name="picseek", standalone_mode=False)
    except PicseekError as exc:
        click.echo(f"picseek: error: {shown(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("picseek: interrupted (run the same command again to continue)", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("picseek: interrupted (run the same command again to continue)", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:  # the last resort (library files are LibraryIOErrors by now; EPIPE is click's): one line
        name = f"{shown(os.fsdecode(exc.filename))}: " if isinstance(exc.filename, (str, bytes)) else ""
        click.echo(f"picseek: error: {name}{exc.strerror or exc}", err=True)
        sys.exit(1)




from . import core, learn, metadata, query, scale, serve  # noqa: E402,F401  (each module registers its commands)


def _global_option(name: str):
    """A copy of one of the group's options for a command, so `picseek index photos --library L` works like
    `picseek --library L index photos`: a value given after the command wins."""
    option = next(p for p in cli.params if p.name == name)

    def keep(ctx: click.Context, param: click.Parameter, value):
        obj = ctx.find_root().obj
        if obj is None or value in (None, False, 0):
            return
        obj[name] = max(obj[name], value) if name == "verbose" else value
        if name in ("verbose", "quiet"):
            _setup_logging(obj["verbose"], obj["quiet"])

    return click.Option(option.opts, count=option.count, is_flag=option.is_flag if not option.count else False,
                        metavar=option.metavar, help=option.help, expose_value=False, callback=keep)


def _share_global_options(group: click.Group) -> None:
    """The global options declared once, on the group, and accepted after any command too."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _share_global_options(command)
        taken = {opt for p in command.params for opt in getattr(p, "opts", ())}
        for name in ("library", "store", "verbose", "quiet"):
            shared = _global_option(name)
            if not taken & set(shared.opts):
                command.params.append(shared)


_share_global_options(cli)

if __name__ == "__main__":  # pragma: no cover
    main()
