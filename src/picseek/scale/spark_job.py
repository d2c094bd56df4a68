"""The spark-submit entry point of Spark indexing: inputs -> Parquet shards (and optionally a merge).

    spark-submit --master yarn --py-files picseek-0.1.0-py3-none-any.whl \\
        "$(python -c 'import picseek.scale.spark_job as j; print(j.__file__)')" \\
        hdfs:///lists/photos.parquet --shards hdfs:///picseek/run1 --model clip-vit-b-32
    python -m picseek.scale.spark_job ./photos --shards ./shards --master 'local[4]' --library ~/lib --merge

The master comes from spark-submit (or --master when run with python). Problems are one line on stderr and an
exit code, as in the picseek command.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from picseek import config
from picseek.errors import PicseekError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="picseek.scale.spark_job", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="a folder or object-store prefix, or a list file (Parquet, CSV/TSV, JSON, JSON "
                                  "Lines, one path per line) of local paths, file:// or fsspec URLs")
    ap.add_argument("--shards", required=True, help="output folder for the Parquet shards (shared by the executors: "
                                                    "a network folder, hdfs://, s3a://)")
    ap.add_argument("--model", help="model name or folder the executors can read (default: the --library's model, "
                                    "else the `model` setting)")
    ap.add_argument("--library", help="the library the shards are for: its recorded model is used")
    ap.add_argument("--merge", action="store_true", help="merge the shards into --library at the end (the shards "
                                                         "folder must be readable here)")
    ap.add_argument("--master", help="Spark master when not run by spark-submit (e.g. local[4])")
    ap.add_argument("--column", help="the list's column of paths/URLs (default: path, url, file, ...)")
    ap.add_argument("--batch-size", type=int, help="images per model call in a task (default: the batch_size "
                                                   "setting: PICSEEK_BATCH_SIZE, the config file, else "
                                                   f"{config.default('batch_size')})")
    ap.add_argument("--partitions", type=int, help="Spark partitions (default: one per 512 inputs, at least the "
                                                   "default parallelism)")
    ap.add_argument("--threads", type=int, help="model threads per task (default: spark.task.cpus)")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8", "fp16"],
                    help="what runs a CLIP-family model")
    ap.add_argument("--device", default="cpu", help="cpu (default), or cuda on GPU executors: each task uses the "
                                                    "GPU Spark assigned it (spark.task.resource.gpu.amount)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    if args.merge and not args.library:
        ap.error("--merge needs --library")
    return args


def run(args: argparse.Namespace) -> dict:
    from picseek.library import Library
    from picseek.scale.spark import index_on_spark, model_for_library

    lib = Library(args.library, create=True) if args.library else None
    model = model_for_library(lib, args.model)
    report = index_on_spark(args.master, args.input, args.shards, model=model or "auto",
                            batch_size=config.get("batch_size", args.batch_size),
                            max_pixels=config.get("max_image_pixels"), partitions=args.partitions,
                            column=args.column, threads=args.threads, precision=args.precision, device=args.device,
                            skip=[str(lib.path)] if lib is not None else [])
    merged = lib.merge([report.shards]) if args.merge else None
    return {"spark": report.as_dict(), "merge": merged.as_dict() if merged else None}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="picseek: %(levelname)s: %(message)s")
    try:
        out = run(args)
    except PicseekError as exc:
        print(f"picseek: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        s = out["spark"]
        print(f"Embedded {s['inputs']} inputs on Spark ({s['master']}, {s['partitions']} partitions) in "
              f"{s['seconds']:.1f} s with {s['model']}: {s['embedded']} images, {s['errors']} errors "
              f"({s['images_per_s']} images/s); shards in {s['shards']}")
        if out["merge"]:
            m = out["merge"]
            print(f"Merged: {m['added']} added, {m['updated']} updated, {m['unchanged']} already there, "
                  f"{m['errors']} errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
