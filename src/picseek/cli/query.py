"""Commands around the search: tag (by hand and zero-shot), similar (more like this), duplicates."""
from __future__ import annotations

import json

import click

from ..paths import shown
from .core import echo_hits, hit_output
from .group import _open, cli, nothing_found
from .options import json_option, limit_option, threshold_option, where_option
from .progress import Progress

EPILOG_TAG = """\b
Examples:
  picseek tag add 42 beach "new york"     # by id, or the path of an indexed file
  picseek tag remove ./trip/IMG_1.jpg beach
  picseek tag list                        # every tag and how many images carry it
  picseek tag --labels labels.txt         # zero-shot: one label per line
  picseek tag --labels labels.txt --threshold 0.5 --json
"""
EPILOG_SIMILAR = """\b
Examples:
  picseek similar 42
  picseek similar ./trip/IMG_1.jpg --limit 5 --where 'taken>=2021'
"""
EPILOG_DUPLICATES = """\b
Examples:
  picseek duplicates
  picseek duplicates --threshold 0.98 --json
"""


@cli.group(invoke_without_command=True, epilog=EPILOG_TAG)
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="Zero-shot tag every image with the labels of FILE (one per line) that score at least "
                   "--threshold; scores are kept, tags get the source 'auto'.")
@click.option("--threshold", type=float, help="Least score (cosine of image and 'a photo of LABEL') for an "
              "automatic tag (default: measured per model; builtin 0.45).")
@click.option("--template", default="a photo of {label}", show_default=True, help="The prompt for each label.")
@json_option("Print the auto-tagging report as JSON.")
@click.pass_context
def tag(ctx, labels, threshold, template, as_json):
    """Tags: add or remove them by hand, list them, or tag the whole library zero-shot with --labels.

    Search with tag:NAME (all tags must hold) or --where tag=NAME.
    """
    if ctx.invoked_subcommand is not None:
        if labels:
            raise click.UsageError("--labels tags the whole library; it does not go with a subcommand")
        return
    if not labels:
        raise click.UsageError("give --labels FILE, or a subcommand (add, remove, list)")
    from ..learn.zeroshot import read_labels

    lib = _open(ctx)
    with Progress.for_command(ctx, as_json) as progress:
        report = lib.auto_tag(read_labels(labels), threshold=threshold, template=template,
                              progress=progress.callback("tagging"))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    click.echo(f"Scored {report.images} images against {report.labels} labels: {report.tags} tags at or above "
               f"{report.threshold:g}.")
    for label, n in sorted(report.per_label.items(), key=lambda kv: -kv[1]):
        click.echo(f"  {n:6d}  {label}")


@tag.command("add")
@click.argument("image")
@click.argument("tags", nargs=-1, required=True)
@click.pass_context
def tag_add(ctx, image, tags):
    """Tag IMAGE (an id or the path of an indexed file) with TAGS."""
    now = _open(ctx).tag_add(image, tags)
    click.echo(f"{image}: {', '.join(now)}")


@tag.command("remove")
@click.argument("image")
@click.argument("tags", nargs=-1, required=True)
@click.pass_context
def tag_remove(ctx, image, tags):
    """Remove TAGS from IMAGE (an id or the path of an indexed file), whatever their source."""
    n = _open(ctx).tag_remove(image, tags)
    click.echo(f"Removed {n} tag{'s' if n != 1 else ''} from {image}.")


@tag.command("list")
@json_option()
@click.pass_context
def tag_list(ctx, as_json):
    """Every tag in the library and how many images carry it."""
    counts = _open(ctx).tag_counts()
    if as_json:
        click.echo(json.dumps(counts, indent=2))
    elif not counts:
        click.echo("No tags yet (picseek tag add ID TAG, or picseek tag --labels FILE).")
    for name, n in counts.items() if not as_json else ():
        click.echo(f"{n:6d}  {name}")
    if not counts:
        nothing_found()


@cli.command(epilog=EPILOG_SIMILAR)
@click.argument("image")
@limit_option()
@threshold_option()
@where_option()
@hit_output
@click.pass_context
def similar(ctx, image, limit, threshold, where, output):
    """More like IMAGE (an id or the path of an indexed file); IMAGE itself is left out."""
    hits = _open(ctx).similar(image, limit=limit, threshold=threshold, where=where)
    echo_hits(hits, output)


@cli.command(epilog=EPILOG_DUPLICATES)
@click.option("--threshold", "-t", default=0.95, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Least similarity (cosine, in the model's image space) of two near-duplicates.")
@json_option("Print the groups as JSON.")
@click.pass_context
def duplicates(ctx, threshold, as_json):
    """Groups of near-duplicate images (for cleaning a library); files are never touched."""
    lib = _open(ctx)
    with Progress.for_command(ctx, as_json) as progress:
        groups = lib.duplicates(threshold, progress=progress.callback("comparing"))
    if as_json:
        click.echo(json.dumps([[h.as_dict() for h in g] for g in groups]))
    elif not groups:
        click.echo(f"No near-duplicates at similarity {threshold:g} or more.")
    if as_json or not groups:
        if not groups:
            nothing_found()
        return
    for n, group in enumerate(groups, 1):
        click.echo(f"group {n} ({len(group)} images)")
        for h in group:
            size = f"{h.width}x{h.height}" if h.width else "?"
            click.echo(f"  {h.score:6.3f}  {size:>11}  {shown(h.source or h.path)}")
    click.echo(f"{len(groups)} groups, {sum(len(g) for g in groups)} images.")
