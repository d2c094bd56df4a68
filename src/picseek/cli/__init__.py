"""The command line: parse options -> one library call -> print. The only place that draws progress bars;
errors are translated here, once, into one line on stderr and an exit code.

The group lives in group.py; each module of this package adds its commands to it."""
from __future__ import annotations

import logging
import os
import sys
import traceback

import click

from ..errors import CANNOT_GO_ON, INTERNAL, INTERRUPTED, PicseekError, one_line
from ..paths import shown
from .group import _safe_streams, _setup_logging, cli, fail
from .options import share_global_options

__all__ = ["cli", "main", "fail"]


def main(argv: list[str] | None = None) -> None:
    _safe_streams()
    try:
        cli.main(args=argv, prog_name="picseek", standalone_mode=False)
    except PicseekError as exc:
        fail(shown(str(exc)), exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        fail("interrupted (run the same command again to continue)", INTERRUPTED, prefix="")
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:  # the last resort (library files are LibraryIOErrors by now; EPIPE is click's): one line
        name = f"{shown(os.fsdecode(exc.filename))}: " if isinstance(exc.filename, (str, bytes)) else ""
        fail(f"{name}{exc.strerror or exc}", CANNOT_GO_ON)
    except Exception as exc:  # a bug: one line (the traceback with -v), and a status of its own
        logging.getLogger("picseek").debug("internal error", exc_info=True)
        if logging.getLogger("picseek").isEnabledFor(logging.INFO):
            traceback.print_exc()
        fail(f"{type(exc).__name__}: {one_line(exc)} (run again with -v for the traceback; please report it)",
             INTERNAL, prefix="internal error: ")


# Each module registers its commands, in the order docs/cli.md lists them (the search commands before learn's).
from . import core, query  # noqa: E402,F401,I001
from . import embeddings, learn, metadata, scale, serve, watch  # noqa: E402,F401,I001
from . import events  # noqa: E402,F401,I001

share_global_options(cli, _setup_logging)  # (after the commands are registered)

if __name__ == "__main__":  # pragma: no cover
    main()
