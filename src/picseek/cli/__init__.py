"""The command line: parse options -> one library call -> print. The only place that draws progress bars;
errors are translated here, once, into one line on stderr and an exit code.

The group and the error edge live here; each module of this package adds its commands to `cli`."""
from __future__ import annotations

import logging
import os
import sys

import click

from .. import __version__
from ..errors import PicseekError


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        return f"picseek: {level}: {record.getMessage()}" if record.levelno >= logging.WARNING else \
            f"picseek: {record.getMessage()}"


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
    ctx.obj = {"library": library, "store": store, "quiet": quiet}


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="picseek", standalone_mode=False)
    except PicseekError as exc:
        click.echo(f"picseek: error: {exc}", err=True)
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




from . import core, learn, metadata, query, scale, serve  # noqa: E402,F401  (each module registers its commands)

if __name__ == "__main__":  # pragma: no cover
    main()
