"""Scale-out commands: `picseek merge`, and the `--engine spark` half of `picseek index`."""
from __future__ import annotations

import json
import shutil
import tempfile

import click

from ..paths import shown
from .group import _open, cli
from .options import json_option

EPILOG_MERGE = """\b
Examples:
  picseek --library ~/lib merge ./shards
  picseek --library ~/lib merge /mnt/shared/run1 /mnt/shared/run2/part-00000-x.parquet
The shards come from `picseek index --engine spark --shards DIR` or the spark-submit job (docs/deployment.md).
"""


@cli.command(epilog=EPILOG_MERGE)
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True))
@json_option("Print the report as JSON.")
@click.pass_context
def merge(ctx, shards, as_json):
    """Load the Parquet SHARDS (folders or files) that Spark indexing wrote into the library.

    Safe to repeat: an image the library already holds with the same path and content adds nothing. The shards'
    model must be the library's; a new library takes the shards' model. Error rows are listed by status --errors.
    """
    lib = _open(ctx, create=True)
    report = lib.merge(shards)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    _print_merge(report, lib)


def _print_merge(report, lib) -> None:
    click.echo(f"Merged {report.rows} shard rows from {len(report.shards)} files into {lib.path} in "
               f"{report.seconds:.1f} s: {report.added} added, {report.updated} updated, {report.unchanged} "
               f"already there, {report.errors} errors" +
               (f" ({report.skipped_errors} known errors skipped)" if report.skipped_errors else ""))
    for path, reason in report.error_samples[:5]:
        click.echo(f"  skipped {shown(path)}: {shown(reason)}", err=True)
    if report.errors > 5:
        click.echo("  ... see all with: picseek status --errors", err=True)


def check_spark_options(engine: str, master: str | None, shards: str | None, **local_only) -> bool:
    """True when the index run goes to Spark; refuses options that belong to the other engine."""
    if engine != "spark":
        for name, value in (("--master", master), ("--shards", shards)):
            if value:
                raise click.UsageError(f"{name} goes with --engine spark")
        return False
    for name, value in local_only.items():
        if value:
            raise click.UsageError(f"{name} does not apply with --engine spark")
    return True


def index_on_spark_cli(ctx, folders, from_list, url_column, model, *, master, shards, batch_size, as_json) -> None:
    """`picseek index --engine spark`: FOLDERS or the --from-list inputs -> shards on Spark -> (merge)."""
    from .. import config
    from ..scale.spark import index_on_spark, model_for_library

    inputs = from_list or (folders[0] if len(folders) == 1 else None)
    if inputs is None:
        raise click.UsageError("--engine spark takes one FOLDER (or --from-list FILE)")
    lib = _open(ctx, model, create=True) if shards is None else _existing(ctx, model)
    name = model_for_library(lib, model)
    target = shards or tempfile.mkdtemp(prefix="spark-shards-", dir=lib.path)
    try:
        report = index_on_spark(master, inputs, target, model=name, batch_size=config.get("batch_size", batch_size),
                                max_pixels=config.get("max_image_pixels"), column=url_column,
                                precision=ctx.obj.get("precision"), device=config.get("device", ctx.obj.get("device")),
                                skip=[str(lib.path)] if lib is not None else [])
        merged = lib.merge([target]) if shards is None else None
    finally:
        if shards is None:
            shutil.rmtree(target, ignore_errors=True)
    if as_json:
        click.echo(json.dumps({"spark": report.as_dict(), "merge": merged.as_dict() if merged else None}, indent=2))
        return
    click.echo(f"Embedded {report.inputs} inputs on Spark ({report.master}, {report.partitions} partitions) in "
               f"{report.seconds:.1f} s with {report.model}: {report.embedded} images, {report.errors} errors "
               f"({report.images_per_s:.1f} images/s)")
    if merged is not None:
        _print_merge(merged, lib)
    else:
        where = f"--library {lib.path} " if lib is not None else ""
        click.echo(f"Shards in {report.shards}; load them with: picseek {where}merge {report.shards}")
        for path, reason in report.error_samples[:5]:
            click.echo(f"  skipped {shown(path)}: {shown(reason)}", err=True)


def _existing(ctx, model):
    """The library when it exists (its model decides), else None: --shards alone never creates one."""
    from ..errors import LibraryError

    try:
        return _open(ctx, model, create=False)
    except LibraryError:
        return None
