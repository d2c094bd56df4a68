"""Where the decode cost D of one photo goes, stage by stage, before and after issue 20, and what the alternatives
cost (content hashes, JPEG bindings, resize filters). Prints figures; asserts nothing.

    python benchmarks/decode_cost.py [-n 20] [--photos DIR ...] [--repeats 5] [--cosine] [--clip MODEL_DIR]

D is what a decode worker spends on one file on one core (`decode_file`: read, hash, header and EXIF, the JPEG
decoded at 1/8 scale in the DCT, orientation, resize to the model's input); the indexing pipeline on P cores reaches
at most about 1 / (1/C + D/P) images/s with a model-only ceiling C (benchmarks/vs_rclip.py). Every stage runs on the
same bytes in this one process (page cache warm, one thread), and the configurations are interleaved photo by photo
(A B A B ...) over `--repeats` rounds; figures are medians over photos x rounds.

Stages: read (open + read the file), hash, header + EXIF (Image.open from memory, `info_from`), entropy decode at
1/8 (libjpeg-turbo through Pillow's draft mode with YCbCr out: Huffman decoding + the DC-only IDCT, no colour
conversion), colour conversion (the same decode with RGB out, minus the one above), resize (`prepare_image` on the
decoded 1/8 image: bicubic shortest side to the input size, centre crop, to a uint8 array), handing the pixels to
the model (pickling the worker's result and back, and the per-photo share of `normalize`), and the total through
`decode_file`. "before" is the path before issue 20: the blake2b-128 content hash, and Pillow's decoder fed the
file's bytes 64 KiB at a time (its default) instead of in one piece.

Photos: `bench-out/photos/nN/{12mp,1mp}` made by ../shared/bench/make_photos.py (as index_speed.py makes them), or
folders given with --photos. --cosine also embeds each decode variant and compares it with a full decode (the
built-in model, real weights; with --clip the random-weight ViT-B/32 of the other benchmarks too): the worst photo's
cosine says whether a variant is good enough (>= 0.99).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import index_speed as base  # noqa: E402  (the photo builder, machine info)

from picseek.ingest import contenthash, images  # noqa: E402
from picseek.ingest.exif import info_from  # noqa: E402
from picseek.ingest.images import DEFAULT_MAX_PIXELS, _decode, decode_file  # noqa: E402
from picseek.models.base import ImageSpec, normalize, prepare_image  # noqa: E402
from stress import cpu  # noqa: E402  (CPU model name and SIMD flags)


def cpu_flags() -> str:
    name, flags = cpu()
    return f"{name}; flags: {flags}"


# -- the alternatives ----------------------------------------------------------------------------------------------
def hashers() -> dict[str, Callable[[bytes], str]]:
    out = {"blake2b-128 (before)": lambda d: hashlib.blake2b(d, digest_size=16).hexdigest(),
           "sha256": lambda d: hashlib.sha256(d).hexdigest(),
           "blake3-128 (now)": contenthash.hash_bytes}
    try:
        import xxhash

        out["xxh3-128"] = xxhash.xxh3_128_hexdigest
    except ImportError:
        pass
    return out


def _factor(w: int, h: int, size: int) -> int:
    """The largest DCT scale-down (1, 2, 4, 8) that keeps both sides >= size (what Pillow's draft picks)."""
    return next(k for k in (8, 4, 2, 1) if k == 1 or (-(-w // k) >= size and -(-h // k) >= size))


def bindings(size: int) -> dict[str, Callable[[bytes], Image.Image]]:
    """JPEG bytes -> the RGB image at the reduced scale, one per binding that is installed."""

    def pillow(d: bytes) -> Image.Image:
        im = Image.open(io.BytesIO(d))
        im.draft("RGB", (size, size))
        im.load()
        return im

    out: dict[str, Callable[[bytes], Image.Image]] = {"Pillow draft": pillow}
    try:
        import simplejpeg

        out["simplejpeg min_height/min_width"] = lambda d: Image.fromarray(
            simplejpeg.decode_jpeg(d, colorspace="RGB", min_height=size, min_width=size))
    except ImportError:
        pass
    try:
        from turbojpeg import TJPF_RGB, TurboJPEG

        tj = TurboJPEG()

        def turbo(d: bytes) -> Image.Image:
            w, h, _, _ = tj.decode_header(d)
            k = _factor(w, h, size)
            return Image.fromarray(tj.decode(d, pixel_format=TJPF_RGB, scaling_factor=(1, k)))

        out["PyTurboJPEG scaling_factor"] = turbo
    except (ImportError, RuntimeError, OSError):  # no module, or no system libturbojpeg it can use
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
        flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}

        def opencv(d: bytes) -> Image.Image:
            with Image.open(io.BytesIO(d)) as im:  # header only: the scale
                k = _factor(*im.size, size)
            a = cv2.imdecode(np.frombuffer(d, np.uint8), flags[k] | cv2.IMREAD_IGNORE_ORIENTATION)
            return Image.fromarray(np.ascontiguousarray(a[..., ::-1]))

        out["OpenCV IMREAD_REDUCED_COLOR_n"] = opencv
    except ImportError:
        pass
    return out


def _other_filter(spec: ImageSpec) -> ImageSpec:
    other = "bilinear" if spec.resample == "bicubic" else "bicubic"
    return ImageSpec(size=spec.size, resize=spec.resize, resample=other, mean=spec.mean, std=spec.std)


def box_prepare(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """Tried, not taken: resample only the centre crop's box of the source (shortest_crop) instead of the whole image
    and then the crop. Same filter and centres, but 1-LSB differences in a few pixels from the Hugging Face
    processors, which prepare_image matches exactly below 4x the input (tests/unit/test_onnx_repo.py)."""
    if spec.resize != "shortest_crop":
        return prepare_image(img, spec)
    s, (w, h) = spec.size, img.size
    short = min(w, h)
    nw, nh = max(s, s * w // short), max(s, s * h // short)
    left, top, sx, sy = (nw - s) // 2, (nh - s) // 2, w / nw, h / nh
    box = (left * sx, top * sy, min(w, (left + s) * sx), min(h, (top + s) * sy))
    filt = Image.Resampling.BICUBIC if spec.resample == "bicubic" else Image.Resampling.BILINEAR
    out = img.resize((s, s), filt, box=box, reducing_gap=3.0 if short > 4 * s else None)
    return np.asarray(out.convert("RGB"), dtype=np.uint8)


def resizes(spec: ImageSpec) -> dict[str, Callable[[Image.Image], np.ndarray]]:
    other = _other_filter(spec)
    return {f"prepare_image, the spec's {spec.resample} (default)": lambda im: prepare_image(im, spec),
            f"{spec.resample}, the crop's box only (tried)": lambda im: box_prepare(im, spec),
            f"{other.resample} instead (not the spec's)": lambda im: prepare_image(im, other)}


# -- timing --------------------------------------------------------------------------------------------------------
def _ms(f: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    f()
    return (time.perf_counter() - t0) * 1000


def stages(paths: list[Path], spec: ImageSpec, repeats: int) -> dict[str, dict[str, list[float]]]:
    """{group: {row: [ms, ...]}}: the per-stage costs, before and after, and the alternatives, interleaved."""
    datas = [p.read_bytes() for p in paths]
    hs, bs, rs = hashers(), bindings(spec.size), resizes(spec)
    out: dict[str, dict[str, list[float]]] = {"stages": {}, "hash": {}, "binding": {}, "resize": {}}

    def add(group: str, row: str, ms: float) -> None:
        out[group].setdefault(row, []).append(ms)

    def old_decode_file(p: Path) -> None:  # decode_file as it was: blake2b-128, Pillow fed 64 KiB at a time
        with open(p, "rb") as f:
            d = f.read()
        hashlib.blake2b(d, digest_size=16).hexdigest()
        img = images._open(d, DEFAULT_MAX_PIXELS)
        full = img.size
        img.draft("RGB", (spec.size, spec.size))
        img.load()
        info = info_from(img, full, "JPEG")
        prepare_image(images._orient(img, info.orientation), spec)

    for _ in range(repeats):
        for p, d in zip(paths, datas):
            add("stages", "total through decode_file: before", _ms(lambda p=p: old_decode_file(p)))
            add("stages", "total through decode_file: now", _ms(lambda p=p: decode_file(str(p), spec)))
            add("stages", "read (open + read, page cache)", _ms(lambda p=p: p.read_bytes()))
            for name, h in hs.items():
                add("hash", name, _ms(lambda h=h, d=d: h(d)))

            def header(d=d) -> None:
                im = Image.open(io.BytesIO(d))
                info_from(im, im.size, "JPEG")

            add("stages", "header + EXIF", _ms(header))

            def ycc(d=d) -> Image.Image:
                im = Image.open(io.BytesIO(d))
                im.draft("YCbCr", (spec.size, spec.size))
                im.load()
                return im

            add("stages", "entropy decode at the draft scale (1/8 for 12 MP), YCbCr out", _ms(ycc))
            for name, b in bs.items():
                add("binding", name, _ms(lambda b=b, d=d: b(d)))
            small = bs["Pillow draft"](d)
            for label, r in rs.items():
                add("resize", label, _ms(lambda r=r, small=small: r(small)))
            px = prepare_image(small, spec)
            dec = decode_file(str(p), spec)
            add("stages", "hand to the model: pickle the result + back",
                _ms(lambda dec=dec: pickle.loads(pickle.dumps(dec))))
            add("stages", "hand to the model: normalize (per photo)", _ms(lambda px=px: normalize(px[None], spec)))
    # derived rows
    st = out["stages"]
    st["hash: before (blake2b-128)"] = out["hash"]["blake2b-128 (before)"]
    st["hash: now (blake3-128)"] = out["hash"]["blake3-128 (now)"]
    st["decode at the draft scale, RGB out (Pillow draft)"] = out["binding"]["Pillow draft"]
    st[f"resize to the model input (prepare_image, {spec.resample})"] = next(iter(out["resize"].values()))
    return out


def cosines(paths: list[Path], models: dict) -> list[tuple[str, str, float, float]]:
    """Each decode variant (binding x resize) against a full decode, embedded by each model: (model, variant, min,
    median cosine)."""
    rows = []
    for mname, emb in models.items():
        spec = emb.image_spec
        ref = np.stack([_decode(p.read_bytes(), spec, DEFAULT_MAX_PIXELS, None)[0] for p in paths])
        want = np.concatenate([emb.embed_pixels(ref[i:i + 16])["main"] for i in range(0, len(ref), 16)])
        for bname, b in bindings(spec.size).items():
            for rlabel, r in resizes(spec).items():
                px = np.stack([r(b(p.read_bytes())) for p in paths])
                got = np.concatenate([emb.embed_pixels(px[i:i + 16])["main"] for i in range(0, len(px), 16)])
                cos = np.sum(want * got, axis=1)
                rows.append((mname, f"{bname}, {rlabel}", float(cos.min()), float(np.median(cos))))
    return rows


def table(title: str, rows: dict[str, dict[str, list[float]]]) -> None:
    """One row per stage or variant, one column per photo set (median ms)."""
    kinds = list(rows)
    print(f"\n### {title}\n")
    print("| row | " + " | ".join(f"{k}: ms, median (min)" for k in kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    names = list(next(iter(rows.values())))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{statistics.median(rows[k][name]):.2f} ({min(rows[k][name]):.2f})"
                                           for k in kinds) + " |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20, help="photos per folder (bench-out/photos/nN)")
    ap.add_argument("--photos", type=Path, action="append", default=[],
                    help="a folder of JPEGs instead (repeatable; the first --limit of each)")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=224, help="the model's input size")
    ap.add_argument("--cosine", action="store_true", help="also embed every variant against a full decode")
    ap.add_argument("--clip", help="with --cosine: a CLIP-family model folder too (fp32)")
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--make-photos", type=Path, default=base.DEFAULT_MAKE_PHOTOS)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    if args.photos:
        sets = {str(f): sorted(f.glob("*.jpg"))[:args.limit] for f in args.photos}
    else:
        folders = base.ensure_photos(args.out.resolve() / "photos", args.n, args.make_photos)
        sets = {kind: sorted(f.glob("*.jpg"))[:args.limit] for kind, f in folders.items()}
    info = base.machine_info()
    print(f"date {info['date']}; {cpu_flags()}; nproc {info['nproc']}; Python {info['python']}; "
          f"Pillow {Image.__version__}; load average {base.loadavg()}")
    print(f"command: {' '.join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))}")
    spec = ImageSpec(size=args.size)
    results = {}
    for label, paths in sets.items():
        with Image.open(paths[0]) as im:
            mb = statistics.median(p.stat().st_size for p in paths) / 1e6
            label_full = f"{label} ({len(paths)} x {im.width}x{im.height}, {mb:.1f} MB)"
        results[label_full] = stages(paths, spec, args.repeats)
    for group, title in (("stages", f"Per-stage cost of one photo, one core (input {args.size} px)"),
                         ("hash", "Content hash of the file's bytes"),
                         ("binding", "JPEG decode at the reduced scale, RGB out, by binding"),
                         ("resize", "Resize from the reduced decode to the model's input")):
        table(title, {k: v[group] for k, v in results.items()})
    for label, r in results.items():
        st = r["stages"]
        before = statistics.median(st["total through decode_file: before"])
        now = statistics.median(st["total through decode_file: now"])
        floor_row = "entropy decode at the draft scale (1/8 for 12 MP), YCbCr out"
        floor = statistics.median(st[floor_row])
        paired = statistics.median(n / b for n, b in zip(st["total through decode_file: now"],
                                                          st["total through decode_file: before"]))
        print(f"\n{label}: D before {before:.1f} ms, now {now:.1f} ms (medians; now / before {now / before:.2f}, "
              f"median of the paired ratios {paired:.2f}); entropy-decode floor {floor:.1f} ms (now / floor "
              f"{now / floor:.2f}); minima: before {min(st['total through decode_file: before']):.1f}, now "
              f"{min(st['total through decode_file: now']):.1f}, floor {min(st[floor_row]):.1f} ms")
    if args.cosine:
        from picseek.models.registry import load_embedder

        models = {"builtin (real weights)": load_embedder("builtin")}
        if args.clip:
            models[f"{Path(args.clip).name} (fp32, random weights)"] = load_embedder(args.clip, precision="fp32")
        for label, paths in sets.items():
            print(f"\n### Cosine to a full decode, {label} ({len(paths)} photos)\n")
            print("| model | decode variant | cosine min (worst photo) | cosine median |")
            print("|---|---|---:|---:|")
            for mname, variant, lo, med in cosines(paths, models):
                print(f"| {mname} | {variant} | {lo:.5f} | {med:.5f} |")
    print(f"\nload average at the end: {base.loadavg()}")


if __name__ == "__main__":
    main()
