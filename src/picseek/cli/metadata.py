"""Metadata commands: import-metadata; and the --from-list half of `picseek index` (URL lists)."""
from __future__ import annotations

import json

import click

from ..errors import NOTHING_FOUND
from ..paths import shown
from .group import _open, cli, fail
from .options import json_option
from .progress import Progress

_STAGES = {"download": "downloading", "embed": "indexing"}
EPILOG_IMPORT = """\b
Examples:
  picseek import-metadata photos.csv                  # join by path, file name, id or URL: the best match
  picseek import-metadata unsplash/photos.tsv000      # Unsplash: photo_id joins <photo_id>.jpg files
  picseek import-metadata captions.jsonl --key name --column file
  picseek import-metadata list.parquet --key url --column photo_image_url
"""


@cli.command("import-metadata", epilog=EPILOG_IMPORT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", type=click.Choice(["auto", "path", "name", "id", "url"]), default="auto", show_default=True,
              help="How a row finds its image: file path, file name, id (= file name without extension), the URL "
                   "it was downloaded from, or auto (the column that matches the most rows).")
@click.option("--column", metavar="COL", help="The column that holds the key (default: the usual column names).")
@json_option("Print the report as JSON.")
@click.pass_context
def import_metadata(ctx, file, key, column, as_json):
    """Import metadata for indexed images from FILE: JSON, JSON Lines, CSV/TSV or Parquet.

    Each row joins to images by path, file name, id or URL; its columns become fields (shown by search --json,
    usable in filters), a tags/keywords column becomes tags.
    """
    lib = _open(ctx)
    report = lib.import_metadata(file, key=key, column=column)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_import(report)
    if report.rows and not report.matched:
        fail(f"no row matched an indexed image (joined {report.column!r} as {report.key}); choose the join with "
             "--key and --column", NOTHING_FOUND)


def _print_import(report) -> None:
    if not report.rows:
        click.echo(f"{report.source} has no rows: nothing imported")
        return
    click.echo(f"Read {report.rows} rows from {report.source}; joined by {report.column!r} as {report.key}: "
               f"{report.matched} matched ({report.images} images), {report.unmatched} unmatched; "
               f"{report.fields_written} fields and {report.tags_written} tags written")
    if report.unmatched_examples:
        click.echo(f"  unmatched, e.g.: {', '.join(report.unmatched_examples)}", err=True)
    if report.duplicates:
        click.echo(f"  {report.duplicates} rows repeat an earlier key (the later values win), e.g.: "
                   f"{', '.join(report.duplicate_examples)}", err=True)
    if report.no_key:
        click.echo(f"  {report.no_key} rows have no {report.column!r} value", err=True)
    if report.ambiguous:
        click.echo(f"  {report.ambiguous} rows fit several images (same file name in several folders): "
                   "all of them got the values", err=True)


def index_from_list(ctx, source: str, url_column: str | None, model: str | None, *, workers, batch_size,
                    retry_errors: bool, rebuild: bool, as_json: bool, ocr: bool | None = None) -> None:
    """`picseek index --from-list FILE`: download, index, import; progress for the downloads and the index."""
    lib = _open(ctx, model, create=True)
    with Progress.for_command(ctx, as_json) as progress:
        def update(p) -> None:
            if p.phase in ("download", "embed"):
                progress.update(p.done, p.total, _STAGES[p.phase], unit="url" if p.phase == "download" else "img",
                                errors=p.errors)

        report = lib.index_urls(source, url_column=url_column, retry_errors=retry_errors, rebuild=rebuild,
                                workers=workers, batch_size=batch_size, progress=update, ocr=ocr)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    d, i, m = report.downloads, report.index, report.metadata
    click.echo(f"Downloaded {d.downloaded} of {d.urls} URLs ({d.bytes / 1e6:.1f} MB in {d.seconds:.1f} s), "
               f"{d.cached} already cached, {d.errors} errors"
               + (f", {d.skipped_errors} failed before (--retry-errors to retry)" if d.skipped_errors else ""))
    click.echo(f"Indexed {i.added} new images ({i.unchanged} unchanged, {i.errors} errors); metadata: "
               f"{m.images} images got {m.fields_written} fields")
    for url, reason in d.error_samples[:5]:
        click.echo(f"  {shown(url)}: {shown(reason)}", err=True)
    if d.errors > 5:
        click.echo("  ... see all with: picseek status --errors", err=True)

