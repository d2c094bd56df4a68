"""Batch query mining throughput (issue 18): `Library.mine` of many text queries over a 100k-image library, without
re-ranking and with a full-size BLIP image-text matching model (random weights) re-scoring each query's top 50.
It prints figures; it asserts nothing.

    python benchmarks/mine.py                               # 100k images, 1000 queries, 2 re-ranked queries
    python benchmarks/mine.py --images 100000 --queries 5000 --rerank-queries 4

The library is filled through `Library.import_embeddings` (itself measured by import_embeddings.py) with CLIP-like
synthetic vectors (query_latency.Synth: clustered, not uniform) whose rows name real files: 64 small JPEGs behind
100k symbolic links, so the re-ranker reads and decodes a real image for every candidate. The text side pays for a
real text tower (the built-in model's MiniLM, batched) and then answers with a synthetic 512-d query vector, as
query_latency.py does. The re-ranker is `BlipForImageTextRetrieval` built from transformers' default `BlipConfig`
(ViT-B/16 at 384 px + 12-layer BERT with cross-attention: the shape of Salesforce/blip-itm-base-coco) with random
weights and a small WordPiece vocabulary, saved once under --out; its cost does not depend on the weights.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from import_embeddings import header, workdir  # noqa: E402  (the CPU line; the work folder)
from query_latency import QUERY_TEXTS, Synth  # noqa: E402

TOP = 50


def make_library(work: Path, n: int, synth: Synth, model):
    from PIL import Image

    from picseek import Library

    photos = work / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(64):
        Image.fromarray(rng.integers(0, 255, size=(240, 320, 3), dtype=np.uint8)).save(photos / f"p{i}.jpg")
    links = work / "links"
    links.mkdir(exist_ok=True)
    names = []
    for i in range(n):
        name = links / f"{i:07d}.jpg"
        if not name.exists():
            name.symlink_to(photos / f"p{i % 64}.jpg")
        names.append(str(name))
    vecs = np.concatenate([synth.images(min(50_000, n - s), seed=s) for s in range(0, n, 50_000)])
    np.save(work / "vectors.npy", vecs.astype(np.float16))
    (work / "vectors.txt").write_text("\n".join(names) + "\n")
    lib = Library(work / "lib", model=model)
    report = lib.import_embeddings(work / "vectors.npy", hash_files=False)
    print(f"library: {report.rows} images imported in {report.seconds:.1f} s ({report.local} local files)")
    return lib


def make_standin(synth: Synth):
    """An embedder that runs the built-in text tower on the queries (its cost), then answers with synthetic
    vectors."""
    from picseek.models import registry
    from picseek.models.base import MAIN, EmbedderBase, ImageSpec

    text = registry.load_embedder("builtin")

    class StandIn(EmbedderBase):
        vectors: dict = {}  # the synthetic answers, made before the timing (`prepare`)

        def prepare(self, texts):
            self.vectors.update((t, synth.query(t)) for t in texts)

        def embed_pixels(self, pixels):  # pragma: no cover - never called
            raise AssertionError

        def embed_texts(self, texts):
            text.embed_texts(list(texts))
            return np.stack([self.vectors.get(t) if t in self.vectors else synth.query(t) for t in texts])

    return StandIn(name="stand-in", model_id="stand-in@1", dim=synth.dim, image_spec=ImageSpec(),
                   spaces={MAIN: synth.dim}, image_query_space=MAIN)


def make_blip(folder: Path) -> Path:
    """BLIP ITM base shape (transformers' BlipConfig defaults), random weights, a small WordPiece vocabulary."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in QUERY_TEXTS for w in t.split()} | {"photo", "of", "query"})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *"abcdefghijklmnopqrstuvwxyz0123456789"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True, model_max_length=512)
    tok.save_pretrained(folder)
    config = BlipConfig(text_config={"pad_token_id": tok.pad_token_id, "bos_token_id": tok.cls_token_id,
                                     "sep_token_id": tok.sep_token_id, "eos_token_id": tok.sep_token_id})
    torch.manual_seed(0)
    BlipForImageTextRetrieval(config).save_pretrained(folder)
    size = config.vision_config.image_size
    BlipImageProcessor(size={"height": size, "width": size}, resample=3).save_pretrained(folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--rerank-queries", type=int, default=1, help="queries re-ranked; 0: none")
    ap.add_argument("--rerank-top", type=int, default=TOP, help="candidates re-ranked per query (fewer: a shorter "
                    "run; queries/s at the top 50 is then extrapolated from the pairs/s)")
    ap.add_argument("--out", default=None, help="work folder, kept (default: a temporary one, removed)")
    args = ap.parse_args()
    header("mining", "mine.py")
    with workdir(args.out, "picseek-mine-") as work:
        synth = Synth(512)
        model = make_standin(synth)
        lib = make_library(work, args.images, synth, model)
        queries = [f"{QUERY_TEXTS[i % len(QUERY_TEXTS)]} {i}" for i in range(args.queries)]
        model.prepare(queries)
        lib.mine(queries[:8], top=TOP)  # warm: the vector cache's matrix, the text tower
        for out in ("hits.parquet",):
            t = time.perf_counter()
            _, rep = lib.mine(queries, top=TOP, out=work / out)
            wall = time.perf_counter() - t
            print(f"no re-ranking: {rep.queries} queries x {rep.images} images, top {TOP}: {wall:.2f} s wall = "
                  f"{rep.queries / wall:,.0f} queries/s (embed {rep.seconds_embed:.2f} s, matrix product + top-k "
                  f"{rep.seconds_rank:.2f} s, the rest: paths and {out})")
        if args.rerank_queries:
            import torch

            torch.set_num_threads(os.cpu_count() or 1)
            t = time.perf_counter()
            blip = str(make_blip(work / "blip"))
            from picseek.query.rerank import load_reranker

            load_reranker(blip)
            print(f"BLIP ITM base shape (random weights) built and loaded in {time.perf_counter() - t:.1f} s")
            lib.mine(queries[:1], top=2, rerank=blip)  # warm
            t = time.perf_counter()
            _, rep = lib.mine(queries[:args.rerank_queries], top=args.rerank_top, rerank=blip)
            wall = time.perf_counter() - t
            pairs_s = rep.rows / rep.seconds_rerank
            print(f"re-ranking the top {args.rerank_top}: {rep.queries} queries ({rep.rows} image-text pairs) in "
                  f"{wall:.1f} s: {pairs_s:.2f} pairs/s (re-ranker {rep.seconds_rerank:.1f} s; torch threads "
                  f"{torch.get_num_threads()}) = {pairs_s / TOP:.4f} queries/s with the top {TOP} re-ranked")
        lib.close()


if __name__ == "__main__":
    main()
