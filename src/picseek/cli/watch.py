"""picseek watch: index folders, then keep the library in step with them as files come, change, move and go."""
from __future__ import annotations

import time

import click

from ..paths import shown
from .group import _open, cli, fail
from .options import model_option

EPILOG_WATCH = """\b
Examples:
  picseek watch ~/Pictures                     # index, then follow changes until Ctrl+C
  picseek watch ~/Pictures /mnt/nas/photos --rescan 300
  picseek -q watch ~/Pictures &                # no line per batch
Also: picseek serve --watch ~/Pictures (the web page over a library that stays fresh).
"""


def describe(event) -> str:
    """One line for a watcher's run: what it added, updated, moved, removed (and errors)."""
    stamp = time.strftime("%H:%M:%S")
    if event.error:
        return f"{stamp}  {event.kind}: failed: {event.error}"
    r = event.report
    parts = [f"{n} {what}" for n, what in ((r.added, "added"), (r.updated, "updated"), (r.moved, "moved"),
                                           (r.removed, "removed"), (r.errors, "errors")) if n]
    where = ", ".join(shown(root) for root in event.roots)
    return f"{stamp}  {', '.join(parts) or 'no change'} ({event.kind}: {where}, {r.seconds:.1f} s)"


@cli.command(epilog=EPILOG_WATCH)
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@model_option()
@click.option("--debounce", type=click.FloatRange(0), metavar="SECONDS",
              help="Seconds without new file events before a batch of changes is indexed (default: the "
                   "watch_debounce setting, 1).")
@click.option("--rescan", type=click.FloatRange(0), metavar="SECONDS",
              help="Seconds between full re-scans, the safety net for lost events (network mounts); 0 = never "
                   "(default: the watch_rescan setting, 600).")
@click.option("--workers", type=click.IntRange(0, 64), help="Decode worker processes for large batches "
              "(0 = decode in-process; small batches always are).")
@click.option("--batch-size", type=click.IntRange(1, 1024), help="Images per model batch.")
@click.pass_context
def watch(ctx, folders, model, debounce, rescan, workers, batch_size):
    """Index FOLDERS, then follow them: new, changed, moved and deleted photos reach the library within seconds.

    File system events are batched (a second of quiet), and each batch is an ordinary incremental index run of the
    folders it touched; a full re-scan every --rescan seconds catches what events miss. One index run at a time:
    when another (picseek index, a server) holds the library, the batch waits for it. Prints a line per batch that
    changed something (not with -q). Ctrl+C stops (exit 130).
    """
    quiet = ctx.find_root().obj["quiet"]
    lib = _open(ctx, model, create=True)

    def on_event(event) -> None:
        if event.kind == "initial" and event.report is not None:
            r = event.report
            line = (f"Indexed {r.scanned} files in {r.seconds:.1f} s: {r.added} added, {r.updated} updated, "
                    f"{r.moved} moved, {r.removed} removed, {r.unchanged} unchanged, {r.errors} errors")
            if not quiet:
                click.echo(line)
                click.echo(f"picseek: watching {', '.join(map(shown, folders))} for {lib.path} (Ctrl+C stops)",
                           err=True)
        elif event.error:
            click.echo(f"picseek: warning: {describe(event)}", err=True)
        elif event.changed and not quiet:
            click.echo(describe(event))

    try:
        lib.watch(folders, debounce=debounce, rescan=rescan, workers=workers, batch_size=batch_size,
                  on_event=on_event)
    except KeyboardInterrupt:
        fail("stopped watching", 130, prefix="")
