"""Import and export speed of precomputed vectors (issue 18): `Library.import_embeddings` of an N x 512 float16 .npy
with an id list (Unsplash's layout: `features.npy` + `photo_ids.csv`; ids that name no local file, so nothing is
stat'ed or hashed), then `Library.export_embeddings` to Parquet (float32 and float16) and to clip-retrieval's layout.
It prints figures; it asserts nothing.

    python benchmarks/import_embeddings.py                # 1M vectors
    python benchmarks/import_embeddings.py --n 200000

The vectors are random unit vectors (their values do not change the cost); the library records a 512-d stand-in
model (no weights are loaded: the import never embeds). A second import of the same files measures a rerun (every
row already in).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stress import cpu  # noqa: E402  (CPU model name and SIMD flags)


def standin(dim: int):
    from picseek.models.base import MAIN, EmbedderBase, ImageSpec

    class StandIn(EmbedderBase):
        def embed_pixels(self, pixels):  # pragma: no cover - never called: nothing is embedded
            raise AssertionError("the import embedded an image")

        def embed_texts(self, texts):  # pragma: no cover
            raise AssertionError("the import embedded a text")

    return StandIn(name="stand-in", model_id="stand-in@1", dim=dim, image_spec=ImageSpec(), spaces={MAIN: dim},
                   image_query_space=MAIN)


def make_source(folder: Path, n: int, dim: int) -> Path:
    rng = np.random.default_rng(0)
    arr = np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=np.float16, shape=(n, dim))
    for start in range(0, n, 100_000):
        x = rng.normal(size=(min(100_000, n - start), dim)).astype(np.float32)
        arr[start:start + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    arr.flush()
    del arr
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"))
    ids = ["".join(row) for row in alphabet[rng.integers(0, len(alphabet), size=(n, 11))]]
    (folder / "photo_ids.csv").write_text("photo_id\n" + "\n".join(ids) + "\n")
    return folder / "features.npy"


def header(title: str, script: str) -> None:
    """The first lines of a run's output: what, when, the CPU and its SIMD flags, the load, the command."""
    name, flags = cpu()
    print(f"# {title}; {time.strftime('%Y-%m-%d %H:%M')}; {name}; flags {flags}; nproc {os.cpu_count()}; load "
          f"average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"command: python benchmarks/{script} " + " ".join(sys.argv[1:]))


@contextmanager
def workdir(out: str | None, prefix: str) -> Iterator[Path]:
    """`out` (kept), or a temporary folder removed at the end."""
    work = Path(out or tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        if out is None:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one, removed at the end)")
    args = ap.parse_args()
    from picseek import Library

    header("import/export of embeddings", "import_embeddings.py")
    with workdir(args.out, "picseek-import-") as work:
        t = time.perf_counter()
        source = make_source(work, args.n, args.dim)
        print(f"source: {args.n} x {args.dim} float16 .npy ({source.stat().st_size / 1e6:.0f} MB) + photo_ids.csv, "
              f"made in {time.perf_counter() - t:.1f} s")
        lib = Library(work / "lib", model=standin(args.dim))
        report = lib.import_embeddings(source)
        print(f"import: {report.rows} vectors in {report.seconds:.1f} s = {report.rows / report.seconds:,.0f} "
              f"vectors/s (added {report.added}, fields {report.fields_written}); library "
              f"{lib.store.disk_bytes() / 1e6:.0f} MB")
        again = lib.import_embeddings(source)
        print(f"rerun (all in): {again.seconds:.1f} s = {again.rows / again.seconds:,.0f} rows/s "
              f"(unchanged {again.unchanged})")
        for fmt, dtype, target in (("parquet", "float32", "out32.parquet"), ("parquet", "float16", "out16.parquet"),
                                   ("clip-retrieval", "float16", "cr")):
            t = time.perf_counter()
            rep = lib.export_embeddings(work / target, format=fmt, dtype=dtype)
            size = sum(Path(f).stat().st_size for f in rep.files)
            wall = time.perf_counter() - t
            print(f"export {fmt} {dtype}: {rep.rows} vectors in {rep.seconds:.1f} s = "
                  f"{rep.rows / rep.seconds:,.0f} vectors/s ({size / 1e6:.0f} MB; wall {wall:.1f} s)")
        lib.close()


if __name__ == "__main__":
    main()
