"""Text inside images (ingest/ocr.py): what the reader finds, what the cheap first pass lets through, what both cost.

A rendered set: sentences drawn with several fonts at 12-48 px, some turned a few degrees, on paper, flat colours,
gradients and photo backgrounds, saved as JPEG at quality 50-95; plus scikit-image's sample images that show text
(`text`, `page`, `logo`). Photos without text: generated 12 MP and 1 MP photos (index_speed.py's make_photos.py) and
scikit-image's sample photos. Prints:

  recall     word recall of the recognised text (overall, and for horizontal text >= 16 px: the target is >= 0.90),
             by size and by background; and in 12 MP photos with text of one size each (16-128 px);
  gate       the first pass's recall on text images (by size) and its pass rate on photos without text;
  cost       per photo without text: the first pass (ms, and as a % of picseek's decode + embed of that photo with the
             default model, measured in the same run); per text image: the full pass (ms); on the machine's cores;
  retrieval  a mixed library (photos + rendered documents) indexed through the Python API with OCR on and off, queried
             with 2-4 words of a document, quoted ("...") and as the text filter (text:"..."): hits at rank 1 and
             in the first 10 (skipped, with a line saying so, where `Library.index` does not take `ocr`).

Every image the first pass and the reader see is decoded the way indexing decodes it: the small image is a JPEG's
draft at the model's input size (`load_image(draft=...)`), the full pass gets the image at OCR_SIDE.

    python benchmarks/ocr.py [--out bench-out] [--texts 48] [--photos 8] [--big 12] [--threads 1]
                             [--skip-retrieval]
"""
from __future__ import annotations

import argparse
import inspect
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_speed import DEFAULT_MAKE_PHOTOS, ensure_photos  # noqa: E402  (generated photos, made once)

from stress import cpu  # noqa: E402  (CPU model name and SIMD flags)

SENTENCES = [
    "Quarterly revenue grew by twelve percent", "Please keep this door closed at all times",
    "Meeting moved to Thursday afternoon", "Fresh bread baked every morning", "Platform four for the evening train",
    "Invoice number and payment due date", "No parking between eight and six", "Welcome to the annual garden show",
    "Turn left at the second traffic light", "Battery level low please charge now", "Summer sale everything must go",
    "The museum opens again on Monday", "Emergency exit keep clear", "Coffee tea and homemade lemonade",
    "Your order has been shipped today", "Library books are due in two weeks", "Warning wet floor slippery surface",
    "Total amount including delivery costs", "Chapter seven the long journey home",
    "Visitors must sign in at reception",
    "Bicycle repairs while you wait", "Concert tickets available online", "Lost cat answers to the name Pepper",
    "Quiet please examination in progress", "Open seven days a week until midnight",
    "Hand wash only do not tumble dry",
    "Settings privacy and security options", "Download the latest software update", "Recipe for a quick tomato soup",
    "Board meeting minutes from last week", "Harbour view apartments for rent", "Mountain trail closed after sunset",
]
SIZES = (12, 14, 16, 20, 24, 32, 40, 48)  # px: a font's size, about the height of a line of its text
BIG_SIZES = (16, 32, 48, 64, 96, 128)  # px, in the 12 MP photos with text
CANVASES = ((1280, 800), (1600, 1200), (1024, 768), (1200, 1600), (1440, 900))
BACKGROUNDS = ("paper", "flat", "dark", "gradient", "photo")
FONT_DIRS = ("/usr/share/fonts/truetype", "/usr/share/fonts/opentype", "/usr/local/share/fonts")
FONT_NAMES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf",
              "LiberationSans-Regular.ttf", "LiberationSerif-Regular.ttf", "LiberationSerif-Italic.ttf")
SKIMAGE_TEXT = ("text", "page")  # scikit-image's samples that show text (`text`: handwriting, photographed aslant)
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "immunohistochemistry", "hubble_deep_field",
                  "retina", "horse", "coins", "moon", "grass", "gravel", "brick", "colorwheel", "logo")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the rendered set --------------------------------------------------------------------------------------------

def font_files() -> list[str]:
    """The fonts of FONT_NAMES installed here (DejaVu on a Debian with Pillow's usual fonts); [] -> Pillow's own."""
    found = {}
    for root in FONT_DIRS:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if name in FONT_NAMES and name not in found:
                    found[name] = os.path.join(dirpath, name)
    return [found[n] for n in FONT_NAMES if n in found]


def load_font(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)  # Pillow >= 10.1: its built-in scalable font


@dataclass
class Line:
    words: list[str]
    size: int
    angle: float
    background: str


@dataclass
class TextImage:
    path: Path
    lines: list[Line] = field(default_factory=list)


def photo_background(rng: random.Random, width: int, height: int) -> Image.Image:
    import skimage.data as skd

    base = np.asarray(getattr(skd, rng.choice(("astronaut", "coffee", "chelsea", "rocket")))())[..., :3]
    h, w = base.shape[:2]
    ch = int(h * rng.uniform(0.5, 0.9))
    cw = min(w, int(ch * width / height))
    ch = int(cw * height / width)
    y0, x0 = rng.randrange(h - ch + 1), rng.randrange(w - cw + 1)
    return Image.fromarray(base[y0:y0 + ch, x0:x0 + cw]).resize((width, height), Image.Resampling.BICUBIC)


def background(rng: random.Random, kind: str, width: int, height: int) -> tuple[Image.Image, tuple[int, int, int]]:
    """A background and a text colour that reads on it."""
    if kind == "paper":
        tone = rng.randint(225, 252)
        img = Image.new("RGB", (width, height), (tone, tone - rng.randint(0, 8), tone - rng.randint(0, 20)))
        noise = Image.effect_noise((width, height), 6).convert("RGB")
        return Image.blend(img, noise, 0.06), (rng.randint(0, 60),) * 3
    if kind == "flat":
        colour = tuple(rng.randint(150, 255) for _ in range(3))
        return Image.new("RGB", (width, height), colour), tuple(rng.randint(0, 80) for _ in range(3))
    if kind == "dark":
        colour = tuple(rng.randint(0, 70) for _ in range(3))
        return Image.new("RGB", (width, height), colour), tuple(rng.randint(200, 255) for _ in range(3))
    if kind == "gradient":
        a, b = np.array([rng.randint(170, 255) for _ in range(3)]), np.array([rng.randint(120, 200) for _ in range(3)])
        t = np.linspace(0, 1, width)[None, :, None]
        grad = (a * (1 - t) + b * t).astype(np.uint8).repeat(height, axis=0)
        return Image.fromarray(grad), (rng.randint(0, 50),) * 3
    return photo_background(rng, width, height), (255, 255, 255)


def render(rng: random.Random, fonts: list[str], out: Path, index: int, canvas: tuple[int, int] | None = None,
           size: int | None = None, prefix: str = "text") -> TextImage:
    """A text image: 2-5 sentences (each at one of SIZES, or all at `size`) on one of BACKGROUNDS (a photo for a
    given `canvas`)."""
    width, height = canvas or rng.choice(CANVASES)
    kind = "photo" if canvas else BACKGROUNDS[index % len(BACKGROUNDS)]
    img, colour = background(rng, kind, width, height)
    item = TextImage(out / f"{prefix}_{index:03d}.jpg")
    y = rng.randint(20, 80)
    chosen = size
    for _ in range(rng.randint(2, 5)):
        size = chosen or SIZES[rng.randrange(len(SIZES))]
        sentence = rng.choice(SENTENCES)
        font = load_font(rng.choice(fonts) if fonts else None, size)
        angle = 0.0 if rng.random() < 0.7 else rng.choice((-1, 1)) * rng.uniform(2, 10)
        left, top, right, bottom = font.getbbox(sentence)
        pad = max(4, size // 3)
        layer = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        if kind == "photo":  # a caption on a photo: a plate behind it, or an outline
            if rng.random() < 0.5:
                draw.rectangle((0, 0, layer.width, layer.height), fill=(20, 20, 20, 200))
                draw.text((pad - left, pad - top), sentence, font=font, fill=colour + (255,))
            else:
                draw.text((pad - left, pad - top), sentence, font=font, fill=colour + (255,),
                          stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0, 255))
        else:
            draw.text((pad - left, pad - top), sentence, font=font, fill=colour + (255,))
        if angle:
            layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        if y + layer.height > height - 10 or layer.width > width - 20:
            continue
        x = rng.randint(10, width - layer.width - 10)
        img.paste(layer, (x, y), layer)
        item.lines.append(Line(words_of(sentence), size, angle, kind))
        y += layer.height + rng.randint(size // 2, 3 * size)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(0.6))  # a little out of focus
    img.save(item.path, quality=rng.randint(50, 95))
    return item


def words_of(text: str) -> list[str]:
    return [w for w in re.split(r"[^0-9a-z]+", text.lower()) if w]


def skimage_image(name: str, out: Path) -> Path:
    import skimage.data as skd

    path = out / f"skimage_{name}.png"
    arr = np.asarray(getattr(skd, name)())
    Image.fromarray(arr[..., :3] if arr.ndim == 3 else arr).save(path)
    return path


# -- measuring ---------------------------------------------------------------------------------------------------

def small_image(path: Path, side: int) -> Image.Image:
    """The image the model pipeline decodes: a JPEG's draft no smaller than the model's input (ingest/images.py)."""
    from picseek.ingest.images import load_image

    return load_image(path, draft=side)


def ocr_image(path: Path) -> Image.Image:
    from picseek.ingest.images import load_image
    from picseek.ingest.ocr import OCR_SIDE

    return load_image(path, draft=OCR_SIDE)


def recall_report(items: list[TextImage], pages: dict[Path, str]) -> None:
    found, total = Counter(), Counter()
    for item in items:
        seen = Counter(words_of(pages[item.path]))
        for line in item.lines:
            keys = ["all", f"size {line.size:>2}", f"bg {line.background}",
                    "horizontal" if not line.angle else "turned 2-10 deg"]
            if not line.angle and line.size >= 16:
                keys.append("horizontal >= 16 px")
            for word in line.words:
                hit = seen[word] > 0
                if hit:
                    seen[word] -= 1
                for key in keys:
                    total[key] += 1
                    found[key] += hit
    print("word recall (recognised text vs drawn words):")
    order = ["all", "horizontal >= 16 px", "horizontal", "turned 2-10 deg"] + \
        [f"size {s:>2}" for s in SIZES] + [f"bg {b}" for b in BACKGROUNDS]
    for key in order:
        if total[key]:
            print(f"  {key:<22} {found[key] / total[key]:.3f}  ({found[key]}/{total[key]} words)")


def gate_report(reader, items: list[TextImage], extra_text: list[Path], photos: list[Path],
                side: int) -> dict[Path, float]:
    """The first pass on every image (its small decode); returns its CPU ms per photo without text."""
    by_size, passed = defaultdict(lambda: [0, 0]), 0
    for item in items:
        yes = reader.likely(small_image(item.path, side))
        horizontal = [ln.size for ln in item.lines if not ln.angle]
        smallest = min(horizontal) if horizontal else min(ln.size for ln in item.lines)
        by_size[smallest][0] += yes
        by_size[smallest][1] += 1
        passed += yes
    sk = [(p.stem, reader.likely(small_image(p, side))) for p in extra_text]
    print(f"first pass on text images: recall {passed}/{len(items)} = {passed / max(1, len(items)):.3f} rendered; "
          f"scikit-image {sum(y for _, y in sk)}/{len(sk)} ({', '.join(f'{n}: {y}' for n, y in sk)})")
    print("  by the smallest (horizontal) line in the image: " + ", ".join(
        f"{s} px {v[0]}/{v[1]}" for s, v in sorted(by_size.items())))
    costs, yes = {}, []
    for path in photos:
        img = small_image(path, side)
        t0 = time.process_time()
        said = reader.likely(img)
        costs[path] = (time.process_time() - t0) * 1000
        yes.append((path.name, said))
    said_yes = [n for n, y in yes if y]
    print(f"first pass on photos without text: passes {len(said_yes)}/{len(yes)} = "
          f"{len(said_yes) / max(1, len(yes)):.3f}" + (f" ({', '.join(said_yes)})" if said_yes else ""))
    return costs


def big_report(reader, items: list[TextImage], side: int) -> None:
    """12 MP photos with text of one size each: what the first pass (on the 1/8 draft) and the full pass (at
    OCR_SIDE) find, by the text's size in the full image."""
    gate, found, total = defaultdict(lambda: [0, 0]), Counter(), Counter()
    for item in items:
        size = item.lines[0].size
        gate[size][0] += reader.likely(small_image(item.path, side))
        gate[size][1] += 1
        seen = Counter(words_of(reader.read(ocr_image(item.path)).text))
        for line in item.lines:
            for word in line.words:
                total[size] += 1
                found[size] += seen[word] > 0
                seen[word] -= seen[word] > 0
    print("12 MP photos with text (4000 x 3000, the text's size in the full image): first pass "
          + ", ".join(f"{s} px {v[0]}/{v[1]}" for s, v in sorted(gate.items())) + "; word recall "
          + ", ".join(f"{s} px {found[s] / total[s]:.2f}" for s in sorted(total)))


def decode_embed_ms(model, photos: list[Path]) -> float:
    """picseek's decode (decode_file) + embed (batches of 8) per photo with `model`: the median CPU ms (all threads:
    the core time) per photo of the warm second round."""
    from picseek.ingest.images import decode_file

    per = []
    for _ in range(2):
        for i in range(0, len(photos), 8):
            batch = photos[i:i + 8]
            t0 = time.process_time()
            pixels = np.stack([decode_file(str(p), model.image_spec).pixels for p in batch])
            model.embed_pixels(pixels)
            per.append((time.process_time() - t0) * 1000 / len(batch))
    return statistics.median(per[len(per) // 2:])


def index_cost(folder: Path, model_name: str, repeats: int) -> tuple[float, float, list[float]]:
    """Whole `picseek index FOLDER` runs into a new library, with and without --ocr, alternating (A B A B ...):
    the median seconds of each and the ratio of each pair. Everything counts: the first pass, the full pass of the
    photos it lets through, and loading the reader's models where one does."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for ocr in (False, True):
            with tempfile.TemporaryDirectory() as lib:
                cmd = [sys.executable, "-m", "picseek.cli", "-q", "-L", lib, "index", str(folder), "--model",
                       model_name, *(["--ocr"] if ocr else [])]
                t0 = time.perf_counter()
                subprocess.run(cmd, env=env, check=True, capture_output=True)
                times[ocr].append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(times[False], times[True])]
    return statistics.median(times[False]), statistics.median(times[True]), ratios


def full_pass_ms(reader, items: list[TextImage]) -> tuple[dict[Path, str], list[float]]:
    pages, costs = {}, []
    for item in items:
        img = ocr_image(item.path)
        t0 = time.process_time()
        pages[item.path] = reader.read(img).text
        costs.append((time.process_time() - t0) * 1000)
    return pages, costs


# -- retrieval through the Python API ----------------------------------------------------------------------------

def retrieval(items: list[TextImage], photos: list[Path], out: Path, queries: int) -> None:
    import shutil

    from picseek import Library
    from picseek.errors import PicseekError

    if "ocr" not in inspect.signature(Library.index).parameters:
        print("retrieval: skipped (Library.index does not take ocr= in this picseek yet)")
        return
    images = out / "mixed"
    if images.exists():
        shutil.rmtree(images)
    images.mkdir(parents=True)
    for p in [i.path for i in items] + photos:
        shutil.copy(p, images / p.name)
    shows = {i.path.name: "\n".join(" ".join(line.words) for line in i.lines) for i in items}
    rng = random.Random(7)
    asks = []
    for item in rng.sample(items, min(queries, len(items))):
        line = max(item.lines, key=lambda ln: ln.size)
        n = rng.randint(2, min(4, len(line.words)))
        start = rng.randrange(len(line.words) - n + 1)
        asks.append((item.path.name, " ".join(line.words[start:start + n])))
    for ocr in (False, True):
        lib = Library(out / f"lib-ocr-{ocr}")
        t0 = time.perf_counter()
        lib.index([images], ocr=ocr)
        took = time.perf_counter() - t0
        # a hit: the result shows the words (several documents share a sentence: any of them will do); the words as
        # a quoted term (ranked by the model's vectors fused with keyword search) and as the text-in-image filter
        for form in ('"{}"', 'text:"{}"'):
            first = top10 = 0
            try:
                for _name, q in asks:
                    found = [Path(h.path).name for h in lib.search(form.format(q), limit=10)]
                    first += bool(found) and q in shows.get(found[0], "")
                    top10 += any(q in shows.get(name, "") for name in found)
            except PicseekError as exc:
                print(f"retrieval ocr={'on ' if ocr else 'off'} {form.format('WORDS')}: {exc}")
                continue
            print(f"retrieval ocr={'on ' if ocr else 'off'} {form.format('WORDS'):<13}: rank-1 {first}/{len(asks)}, "
                  f"in the first 10 {top10}/{len(asks)}")
        print(f"  (indexing {len(items) + len(photos)} images with ocr={'on' if ocr else 'off'} took {took:.1f} s)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench-out", help="cache folder (photos, rendered images, libraries)")
    ap.add_argument("--texts", type=int, default=48, help="rendered text images (default 48)")
    ap.add_argument("--photos", type=int, default=8, help="generated photos of each size, 12 MP and 1 MP (default 8)")
    ap.add_argument("--big", type=int, default=12, help="12 MP photos with text, one size each (default 12)")
    ap.add_argument("--threads", type=int, default=1, help="the reader's ONNX Runtime threads (default 1)")
    ap.add_argument("--make-photos", default=str(DEFAULT_MAKE_PHOTOS), help="path of make_photos.py")
    ap.add_argument("--queries", type=int, default=12, help="retrieval queries (default 12)")
    ap.add_argument("--skip-retrieval", action="store_true")
    ap.add_argument("--index-repeats", type=int, default=3, help="pairs of whole index runs for the cost (default 3)")
    args = ap.parse_args(argv)

    import onnxruntime

    from picseek.ingest.ocr import OCR_SIDE, OcrReader

    name, flags = cpu()
    print(f"# ocr; {time.strftime('%Y-%m-%d %H:%M')}; {name}; CPU flags: {flags}; cores {len(os.sched_getaffinity(0))};"
          f" onnxruntime {onnxruntime.__version__}; reader threads {args.threads}; OCR_SIDE {OCR_SIDE}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folders = ensure_photos(out / "photos", args.photos, Path(args.make_photos))
    with tempfile.TemporaryDirectory(dir=out, prefix="ocr-") as tmp:
        tmp = Path(tmp)
        fonts = font_files()
        print(f"fonts: {', '.join(Path(f).stem for f in fonts) or 'Pillow default'}")
        rng = random.Random(2019)  # (ingest/ocr.py's first pass was tuned on another seed's set)
        items = [render(rng, fonts, tmp, i) for i in range(args.texts)]
        items = [i for i in items if i.lines]
        extra_text = [skimage_image(n, tmp) for n in SKIMAGE_TEXT]
        photos = sorted(p for f in folders.values() for p in f.glob("*.jpg"))
        photos += [skimage_image(n, tmp) for n in SKIMAGE_PHOTOS]
        log(f"{len(items)} text images, {len(photos)} photos without text")

        reader = OcrReader(threads=args.threads)
        from picseek.models.registry import load_embedder, resolve_auto

        model_name = resolve_auto().name  # the default model (`auto`)
        model = load_embedder(model_name)
        side = model.image_spec.size
        embed = {kind: decode_embed_ms(model, sorted(folder.glob("*.jpg"))) for kind, folder in folders.items()}
        gate_ms = gate_report(reader, items, extra_text, photos, side)
        pages, full_ms = full_pass_ms(reader, items)
        recall_report(items, pages)
        if args.big:
            big = [render(rng, fonts, tmp, i, canvas=(4000, 3000), size=BIG_SIZES[i % len(BIG_SIZES)], prefix="big")
                   for i in range(args.big)]
            big_report(reader, [b for b in big if b.lines], side)
        print(f"cost (CPU time of all threads, ms of one core; load average {os.getloadavg()[0]:.1f} on "
              f"{len(os.sched_getaffinity(0))} cores):")
        for kind, folder in folders.items():
            ms = [gate_ms[p] for p in photos if p.parent == folder]
            base = embed[kind]
            print(f"  photo without text, {kind}: first pass {statistics.median(ms):.1f} ms median, p95 "
                  f"{np.percentile(ms, 95):.1f} ms = {100 * statistics.median(ms) / base:.1f} % of decode + embed "
                  f"({base:.0f} ms per photo, {model_name})")
        for kind, folder in folders.items():
            plain, with_ocr, ratios = index_cost(folder, model_name, args.index_repeats)
            print(f"  whole index run of {len(list(folder.glob('*.jpg')))} {kind} photos without text, new library: "
                  f"{plain:.1f} s, with --ocr {with_ocr:.1f} s: {statistics.median(ratios):.2f}x (pairs "
                  f"{', '.join(f'{r:.2f}' for r in ratios)})")
        print(f"  text image (1024-1600 px): full pass {statistics.median(full_ms):.0f} ms median, p95 "
              f"{np.percentile(full_ms, 95):.0f} ms (read at most {OCR_SIDE} px, {args.threads} thread(s))")
        if not args.skip_retrieval:
            retrieval(items, [p for p in photos if p.suffix == ".jpg"][:16], tmp, args.queries)


if __name__ == "__main__":
    main()
