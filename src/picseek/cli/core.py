"""Core commands: index, search, status, remove, models."""
from __future__ import annotations

import json
import sys

import click

from . import _open, cli

EPILOG_INDEX = """\b
Examples:
  picseek index ~/Pictures
  picseek index ~/Pictures /mnt/photos --workers 2
  picseek --library ~/work-lib index ./shots --model clip-vit-b-32
"""
EPILOG_SEARCH = """\b
Examples:
  picseek search "a dog running on the beach"
  picseek search ./holiday/IMG_0042.jpg --limit 20 --json
  picseek search https://example.com/cat.jpg
  picseek search id:42                     # more like an indexed image
  picseek search "sunset" --paths | xargs -d '\\n' feh
"""



@cli.command(epilog=EPILOG_INDEX)
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=True))
@click.option("--model", "-m", help="Model for a new library (default auto). Existing libraries keep theirs.")
@click.option("--workers", type=click.IntRange(0, 64), help="Decode worker processes (0 = decode in-process).")
@click.option("--batch-size", type=click.IntRange(1, 1024), help="Images per model batch.")
@click.option("--retry-errors", is_flag=True, help="Try again files that failed before and did not change.")
@click.option("--rebuild", is_flag=True, help="Drop all vectors and re-embed everything (e.g. with a new --model).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def index(ctx, folders, model, workers, batch_size, retry_errors, rebuild, as_json):
    """Index the images in FOLDERS: new and changed files are embedded, moved ones followed, deleted ones dropped.

    Safe to interrupt: run it again and it continues where it stopped.
    """
    from tqdm import tqdm

    lib = _open(ctx, model, create=True)
    bar = None

    def progress(p) -> None:
        nonlocal bar
        if ctx.obj["quiet"] or as_json:
            return
        if p.phase == "scan":
            click.echo(f"Scanning {', '.join(folders)} ...", err=True)
        elif p.phase == "embed":
            if bar is None:
                bar = tqdm(total=p.total, unit="img", dynamic_ncols=True, file=sys.stderr,
                           disable=p.total == 0, smoothing=0.1)
            bar.update(p.done - bar.n)
            bar.set_postfix(errors=p.errors, refresh=False)
        elif p.phase == "done" and bar is not None:
            bar.close()

    try:
        report = lib.index(folders, workers=workers, batch_size=batch_size, retry_errors=retry_errors,
                           rebuild=rebuild, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    model = lib.recorded_model or {}
    click.echo(f"Indexed {report.scanned} files in {report.seconds:.1f} s with {model.get('name')}: "
               f"{report.added} added, {report.updated} updated, {report.moved} moved, {report.removed} removed, "
               f"{report.unchanged} unchanged, {report.errors} errors"
               + (f" ({report.images_per_s:.1f} images/s)" if report.embedded else ""))
    if report.skipped_known_errors:
        click.echo(f"{report.skipped_known_errors} files that failed before were skipped (--retry-errors to retry)")
    for path, reason in report.error_samples[:5]:
        click.echo(f"  skipped {path}: {reason}", err=True)
    if report.errors > 5:
        click.echo("  ... see all with: picseek status --errors", err=True)


@cli.command(epilog=EPILOG_SEARCH)
@click.argument("query", nargs=-1, required=True)
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 100000), help="Hits to show.")
@click.option("--threshold", "-t", type=float, help="Only hits with at least this score (cosine similarity).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines: id, path, score, width, height, taken_at.")
@click.option("--paths", is_flag=True, help="Bare paths, one per line (for pipes).")
@click.option("--model", "-m", help="Must match the library's model (it is read from the library).")
@click.pass_context
def search(ctx, query, limit, threshold, as_json, paths, model):
    """Search by text, an image file, an image URL or id:N (an indexed image)."""
    if as_json and paths:
        raise click.UsageError("--json and --paths are exclusive")
    lib = _open(ctx, model)
    hits = lib.search(" ".join(query), limit=limit, threshold=threshold)
    if as_json:
        click.echo(json.dumps([h.as_dict() for h in hits], indent=None))
    elif paths:
        for h in hits:
            click.echo(h.path)
    else:
        if not hits:
            click.echo("No results" + (f" at or above threshold {threshold}" if threshold is not None else "") + ".")
            return
        click.echo(f"{'rank':>4}  {'score':>6}  path")
        for rank, h in enumerate(hits, 1):
            click.echo(f"{rank:>4}  {h.score:6.3f}  {h.path}")


@cli.command()
@click.option("--errors", "show_errors", is_flag=True, help="List the files that could not be indexed, and why.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def status(ctx, show_errors, as_json):
    """Show the library: where it is, its model, how many images and errors, the last index run."""
    lib = _open(ctx)
    info = lib.status()
    if show_errors:
        info["error_list"] = lib.errors()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"library:  {info['library']}")
    click.echo(f"model:    {info['model']} ({info['model_id']}, {info['dim']}-d)")
    click.echo(f"images:   {info['images']}")
    click.echo(f"errors:   {info['errors']}" + ("" if show_errors or not info["errors"] else
                                                 "  (picseek status --errors lists them)"))
    click.echo(f"size:     {info['disk_bytes'] / 1e6:.1f} MB on disk")
    run = info["last_run"]
    if run:
        import datetime as dt

        when = dt.datetime.fromtimestamp(run["started_at"]).isoformat(sep=" ", timespec="seconds")
        stats = run.get("stats") or {}
        click.echo(f"last run: {when}, {run['status']}, {', '.join(run['roots'])}; "
                   f"{stats.get('embedded', 0)} embedded, {stats.get('errors', 0)} errors, "
                   f"{stats.get('seconds', 0):.1f} s")
    for e in info.get("error_list", []):
        click.echo(f"  {e['path']}: {e['reason']}")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.pass_context
def remove(ctx, paths):
    """Forget the images at or below PATHS (folders or files, which may be gone already).

    Files on disk are never touched; index the folder again to bring them back.
    """
    lib = _open(ctx)
    n = lib.remove(paths)
    click.echo(f"Removed {n} images from {lib.path}.")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def models(as_json):
    """List the models picseek knows and whether each is available offline (any hub repo or folder works too)."""
    from ..models.registry import list_models

    rows = list_models()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'name':<16} {'offline':<8} {'dim':>4}  description")
    for r in rows:
        click.echo(f"{r['name']:<16} {'yes' if r['available_offline'] else 'no':<8} {r['dim'] or '?':>4}  "
                   f"{r['description']}")
    click.echo("\nAlso: hf:ORG/NAME (any CLIP/SigLIP on the Hugging Face hub) or a local model folder. "
               "Default: auto (a cached CLIP, else download one, else builtin).")


