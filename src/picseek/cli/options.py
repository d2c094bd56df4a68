"""The options several commands share, each declared once here (name, short flag, type, help).

The global options (--library, --store, -v, -q) are declared on the group and copied onto every command by
`share_global_options`, so they are accepted before or after the command name."""
from __future__ import annotations

import click

JSON_HELP = "Print as JSON."
MODEL_HELP = "Model for a new library (default auto). Existing libraries keep theirs."


def json_option(help: str = JSON_HELP):  # noqa: A002 - click's own name for it
    """`--json` (the parameter `as_json`): machine-readable output on stdout; no progress on stderr then."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def model_option(help: str = MODEL_HELP, **kwargs):  # noqa: A002
    """`--model/-m NAME`."""
    return click.option("--model", "-m", help=help, **kwargs)


def limit_option():
    """`--limit/-n N`: how many hits a command that prints hits shows."""
    return click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 100000),
                        help="Hits to show.")


def threshold_option():
    """`--threshold/-t SCORE`: the least score of a hit."""
    return click.option("--threshold", "-t", type=float,
                        help="Only hits with at least this score (cosine similarity).")


def ocr_option(help: str = "Read the words in images (OCR, pip install 'picseek[ocr]'): they join keyword "
               "search, text:\"...\" and --where has_text=yes. A setting of the library: later runs, watch and "
               "serve --watch keep doing it; images indexed before are read without being embedded again. "
               "--no-ocr stops it."):  # noqa: A002
    """`--ocr/--no-ocr` (None when neither is given: as the library says)."""
    return click.option("--ocr/--no-ocr", "ocr", default=None, help=help)


def where_option():
    """`--where/-w FILTER` (repeatable): the filters of docs/query.md."""
    return click.option("--where", "-w", "where", multiple=True, metavar="FILTER",
                        help="Only images that pass KEY OP VALUE (repeatable, all must hold), e.g. taken>=2021-06-01, "
                             "camera~canon, folder=trips/, width>=1024, photographer='Alec Weir'. See docs/query.md.")


# -- the global options -------------------------------------------------------------------------------------------
library_option = click.option("--library", "-L", metavar="PATH",
                              help="Library folder (env PICSEEK_LIBRARY; default: user data dir).")
store_option = click.option("--store", metavar="URL", help="Keep vectors and metadata in ChromaDB instead of the "
                            "built-in store: chroma://HOST:PORT/COLLECTION or chroma:///PATH?collection=NAME "
                            "(env PICSEEK_STORE; docs/deployment.md).")
verbose_option = click.option("--verbose", "-v", count=True, help="More log output (-vv for debug).")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="Only errors on stderr.")

GLOBAL = ("library", "store", "verbose", "quiet")


def _global_copy(group: click.Group, name: str, on_change):
    """A copy of one of the group's options for a command, so `picseek index photos --library L` works like
    `picseek --library L index photos`: a value given after the command wins."""
    option = next(p for p in group.params if p.name == name)

    def keep(ctx: click.Context, param: click.Parameter, value):
        obj = ctx.find_root().obj
        if obj is None or value in (None, False, 0):
            return
        obj[name] = max(obj[name], value) if name == "verbose" else value
        if name in ("verbose", "quiet"):
            on_change(obj["verbose"], obj["quiet"])

    return click.Option(option.opts, count=option.count, is_flag=option.is_flag if not option.count else False,
                        metavar=option.metavar, help=option.help, expose_value=False, callback=keep)


def share_global_options(group: click.Group, on_change, root: click.Group | None = None) -> None:
    """The global options declared once, on the group, and accepted after any command too; `on_change(verbose,
    quiet)` is called when a copy sets -v or -q."""
    root = root or group
    for command in group.commands.values():
        if isinstance(command, click.Group):
            share_global_options(command, on_change, root)
        taken = {opt for p in command.params for opt in getattr(p, "opts", ())}
        for name in GLOBAL:
            shared = _global_copy(root, name, on_change)
            if not taken & set(shared.opts):
                command.params.append(shared)
