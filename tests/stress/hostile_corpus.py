"""A hostile corpus: a folder of files that a photo indexer meets in the wild, each with the outcome it must have.

`make_corpus(folder)` writes `folder/corpus` (the folder to index) and `folder/outside` (secrets and link targets that
lie outside it) and returns a `Manifest`: for every file below the corpus what must become of it.

- GOOD: must end up in the library (searchable): photos in every format Pillow writes (JPEG, PNG, WebP, GIF, TIFF,
  BMP, animated too), every colour mode, EXIF orientations, awkward names (Latin-1 and invalid UTF-8 bytes, line
  breaks, tabs, ESC/OSC sequences, bidirectional overrides, 255-byte names, deep and long paths), duplicates, hard
  links, links that stay inside the folder, and a chmod 000 file when running as root (root reads it anyway).
- BAD: must be reported in the errors with a one-line reason, and not be searchable: truncated and corrupted files
  of each format, zero-byte files, decompression bombs (huge declared sizes), non-images with image extensions, and
  a chmod 000 file when not running as root.
- IGNORED: must be neither searchable nor an error: hidden files and folders, `._*` files, other extensions.
- ABSENT: must not be searchable; an error row is allowed either way: dangling links, link loops, links that lead
  outside the folder (the `follow_links` setting is off by default), a FIFO named like a photo (it must not hang the
  run), files in a folder that cannot be read.

Paths are bytes (os.fsencode), absolute, spelled as a walk of the resolved corpus folder spells them. Everything is
small and deterministic for a seed; `good=30, copies=1` (about 190 entries) takes about a second.
The tests (tests/stress/) and benchmarks/stress.py both use it.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from broken_images import BAD as BROKEN_BAD
from broken_images import bomb_png, make_broken_images, oriented_jpeg

GOOD, BAD, IGNORED, ABSENT = "good", "bad", "ignored", "absent"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "TIFF": ".tif", "BMP": ".bmp"}
SECRET_MARK = b"PICSEEK-STRESS-SECRET-7f3a9c0e51b2"  # in every secret file; must never appear in a response
SECRET_RGB = (255, 0, 255)  # the secret image's colour (a thumbnail of that colour is a leak too)


@dataclass(frozen=True)
class Item:
    path: bytes  # absolute OS path (bytes), below the corpus folder
    verdict: str  # GOOD, BAD, IGNORED or ABSENT
    kind: str  # what it is, for messages


@dataclass
class Manifest:
    root: bytes  # the folder to index (resolved)
    outside: bytes  # a folder beside it that must never be indexed or served
    items: list[Item] = field(default_factory=list)
    secrets: list[bytes] = field(default_factory=list)  # files outside whose bytes must never be served

    def paths(self, verdict: str) -> set[bytes]:
        return {i.path for i in self.items if i.verdict == verdict}

    def kind_of(self, path: bytes) -> str:
        return next((i.kind for i in self.items if i.path == path), "not in the manifest")

    def counts(self) -> dict[str, int]:
        c = Counter(i.verdict for i in self.items)
        return {v: c.get(v, 0) for v in (GOOD, BAD, IGNORED, ABSENT)}

    def describe(self, path: bytes) -> str:
        """A path for a message: relative to the corpus, every odd byte escaped."""
        rel = path[len(self.root) + 1:] if path.startswith(self.root + b"/") else path
        return f"{rel!r} ({self.kind_of(path)})"


# -- pixels ------------------------------------------------------------------------------------------------------------
def photo(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """Noise plus a few filled shapes: distinct bytes for every seed, something for a model to look at."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, 3)
    arr = np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 5))):
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        box = (x0, y0, x0 + int(rng.integers(8, w // 2 + 9)), y0 + int(rng.integers(8, h // 2 + 9)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=colour)
    return img


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        kw.setdefault("quality", 85)
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def animated(fmt: str, seed: int, frames: int = 3) -> bytes:
    imgs = [photo(seed + k, (64, 48)) for k in range(frames)]
    if fmt == "GIF":
        imgs = [i.quantize(64) for i in imgs]
    buf = io.BytesIO()
    imgs[0].save(buf, fmt, save_all=True, append_images=imgs[1:], duration=80, loop=0)
    return buf.getvalue()


def good_bytes(fmt: str, seed: int) -> bytes:
    """A plain, valid photo file of `fmt`."""
    img = photo(seed, (96 + seed % 5 * 32, 72 + seed % 3 * 24))
    if fmt == "GIF":
        img = img.quantize(128)
    return encode(img, fmt)


# -- bombs and broken headers ------------------------------------------------------------------------------------------
def bomb_png_valid(side: int = 20_000) -> bytes:
    """A complete, valid 1-bit PNG of side x side (400 MP at the default: over the 250 MP limit), ~50 kB."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def bomb_gif() -> bytes:
    """A GIF whose screen and first frame claim 65535 x 65535 (4.3 gigapixels), with a few bytes of data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def bomb_jpeg() -> bytes:
    """A real small JPEG whose frame header (SOF0) is patched to claim 65500 x 65500 pixels."""
    data = bytearray(encode(photo(7, (32, 32)), "JPEG"))
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, 65500, 65500)  # FFC0, length (2), precision (1), height, width
    return bytes(data)


def bomb_bmp() -> bytes:
    """A BMP header claiming 100000 x 100000 pixels at 24 bits, followed by a few bytes."""
    info = struct.pack("<IiiHHIIiiII", 40, 100_000, 100_000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 54) + info + b"\x00" * 64


def bomb_tiff() -> bytes:
    """A little-endian TIFF whose one IFD claims 100000 x 100000 1-bit pixels in one tiny strip."""
    entries = [(256, 4, 1, 100_000), (257, 4, 1, 100_000), (258, 3, 1, 1), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, 100_000), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, typ, n) + (struct.pack("<HH", v, 0) if typ == 3 else struct.pack("<I", v))
        for tag, typ, n, v in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 16


def bomb_webp() -> bytes:
    """A lossless WebP (VP8L) header claiming 16383 x 16383 (268 MP, over the 250 MP limit) and junk data."""
    bits = (16383 - 1) | ((16383 - 1) << 14)  # 14-bit width-1, 14-bit height-1, alpha 0, version 0
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 27
    chunk = b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def corrupted(fmt: str, seed: int) -> bytes:
    """A file of `fmt` whose magic number is right and whose header or data are not: decoders must refuse it."""
    data = bytearray(good_bytes(fmt, seed))
    if fmt == "JPEG":  # SOI, then no valid marker anywhere
        return b"\xff\xd8\xff" + bytes(np.random.default_rng(seed).integers(0, 255, 2048, dtype=np.uint8) | 1)
    if fmt == "PNG":  # IHDR checksum wrong
        data[29:33] = bytes(b ^ 0xFF for b in data[29:33])
        return bytes(data)
    if fmt == "GIF":  # header, then garbage where the frames are
        return bytes(data[:13]) + b"\x2c" + b"\xff" * 64
    if fmt == "TIFF":  # first IFD offset far beyond the end of the file
        return bytes(data[:4]) + struct.pack("<I" if data[:2] == b"II" else ">I", 0x7FFFFFF0) + bytes(data[8:64])
    if fmt == "BMP":  # an impossible bit depth
        struct.pack_into("<H", data, 28, 7)
        return bytes(data)
    if fmt == "WEBP":  # RIFF/WEBP, then a chunk of noise
        return bytes(data[:12]) + b"VP8 " + struct.pack("<I", 256) + b"\x9d\x01\x2a" * 85 + b"\x00"
    raise ValueError(fmt)


def truncated(fmt: str, seed: int) -> bytes:
    """A valid file of `fmt` cut within its header or first rows: nothing a decoder may pass as a whole photo."""
    data = good_bytes(fmt, seed)
    cut = {"JPEG": len(data) // 3, "PNG": len(data) // 3, "WEBP": 40, "GIF": 30, "TIFF": 16, "BMP": 40}[fmt]
    return data[:cut]


def jpeg_with_secret() -> bytes:
    """The secret image: a magenta JPEG whose comment segment holds SECRET_MARK."""
    return encode(Image.new("RGB", (64, 64), SECRET_RGB), "JPEG", comment=SECRET_MARK)


LEAN_MODES = {"L.jpg", "P.png", "bitonal.png", "lossless.webp", "transparent.gif", "cmyk.tif", "I16.tif",
              "multipage.tif", "P.bmp", "animated.png"}
LEAN_OTHERS = {b"pdf.png", b"svg.png", b"eps.jpg", b"ico.png", b"pcx.jpg", b"nul_bytes.jpg"}


# -- names -------------------------------------------------------------------------------------------------------------
# (name bytes, what it is): every one holds a valid photo and must be GOOD.
HOSTILE_NAMES: list[tuple[bytes, str]] = [
    (b"latin1_caf\xe9.jpg", "name in Latin-1 (invalid UTF-8)"),
    (b"bad_utf8_\xff\xfe.png", "name with bytes 0xff 0xfe"),
    (b"bad_utf8_\xc3\x28.webp", "name with a broken UTF-8 sequence"),
    (b"surrogate_\xed\xa0\x80.jpg", "name with an encoded surrogate (invalid UTF-8)"),
    (b"overlong_\xc0\xaf.gif", "name with an overlong UTF-8 slash"),
    (b"new\nline.jpg", "name with a line break"),
    (b"car\rriage.png", "name with a carriage return"),
    (b"tab\tname.jpg", "name with a tab"),
    (b"osc_\x1b]0;pwned\x07.jpg", "name with an OSC title sequence"),
    (b"csi_\x1b[31mred\x1b[0m.png", "name with ANSI colour sequences"),
    (b"c1_csi_\xc2\x9b31m.jpg", "name with a C1 control (U+009B)"),
    (b"bell\x07del\x7f.bmp", "name with BEL and DEL"),
    ("bidi_\u202egpj.exe.jpg".encode(), "name with a right-to-left override"),
    ("line_sep_\u2028_para\u2029.jpg".encode(), "name with U+2028/U+2029"),
    ("zero\u200bwidth.jpg".encode(), "name with a zero-width space"),
    ("emoji_\U0001f4f7_\u732b.jpg".encode(), "name with an emoji and CJK"),
    ("caf\u00e9_nfc.jpg".encode(), "name in NFC"),
    ("cafe\u0301_nfd.jpg".encode(), "name in NFD"),
    ("private_\U0010fffd.png".encode(), "name with U+10FFFD"),
    (b"-rf.jpg", "name that looks like an option"),
    (b"--help.png", "name that looks like a long option"),
    (b" leading space.jpg", "name with a leading space"),
    (b"trailing space .jpg", "name with a space before the extension"),
    (b"quote\"'`$(id).jpg", "name with quotes and shell syntax"),
    (b"back\\slash.jpg", "name with a backslash"),
    (b"percent%2e%2e%2fetc.jpg", "name with URL-encoded ../"),
    (b"id:1.jpg", "name that is query syntax (id:1)"),
    (b"tag:beach -x +y.jpg", "name that is query syntax (tag:, -, +)"),
    (b"star*question?.jpg", "name with glob characters"),
    (b"UPPER.JPG", "upper-case extension"),
    (b"mixed.JpEg", "mixed-case extension"),
    (b"L" * 251 + b".jpg", "255-byte name"),
    ("\u00e9".encode() * 125 + b"x.jpg", "255-byte name of two-byte characters"),
]
BAD_NAMES: list[tuple[bytes, str]] = [  # truncated files with hostile names: they show up in error listings
    (b"trunc_\xff\xfe.jpg", "truncated JPEG with a non-UTF-8 name"),
    (b"trunc_\x1b]0;pwned\x07\n.png", "truncated PNG with an OSC sequence and a line break in its name"),
    (b"trunc_\x1b[2J\r.gif", "truncated GIF with a clear-screen sequence in its name"),
]


def _write(path: bytes, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


class _Builder:
    def __init__(self, root: bytes, outside: bytes, seed: int):
        self.m = Manifest(root, outside)
        self.seed = seed

    def next_seed(self) -> int:
        self.seed += 1
        return self.seed

    def add(self, rel: bytes, data: bytes | None, verdict: str, kind: str) -> bytes:
        path = os.path.join(self.m.root, rel)
        if data is not None:
            _write(path, data)
        self.m.items.append(Item(path, verdict, kind))
        return path


def _good_set(b: _Builder, folder: bytes, n: int) -> None:
    for i in range(n):
        fmt = FORMATS[i % len(FORMATS)]
        b.add(os.path.join(folder, b"good_%04d%s" % (i, EXT[fmt].encode())), good_bytes(fmt, b.next_seed()), GOOD,
              f"plain {fmt}")


def _modes(b: _Builder, d: bytes, lean: bool) -> None:
    s = b.next_seed
    rgb = photo(s(), (80, 60))
    alpha = Image.fromarray(np.broadcast_to(np.linspace(0, 255, 80).astype(np.uint8), (60, 80)).copy())
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    la = rgb.convert("L")
    la.putalpha(alpha)
    i16 = Image.fromarray((np.arange(80 * 60, dtype=np.uint32).reshape(60, 80) * 13 % 65536).astype(np.uint16))
    pal = photo(s(), (80, 60)).quantize(32)
    pal_t = photo(s(), (80, 60)).quantize(16)
    cases: list[tuple[str, bytes]] = [
        ("L.jpg", encode(rgb.convert("L"), "JPEG")), ("cmyk.jpg", encode(photo(s()).convert("CMYK"), "JPEG")),
        ("progressive.jpg", encode(photo(s()), "JPEG", progressive=True)),
        ("L.png", encode(rgb.convert("L"), "PNG")), ("LA.png", encode(la, "PNG")), ("P.png", encode(pal, "PNG")),
        ("P_transparent.png", encode(pal_t, "PNG", transparency=0)), ("RGBA.png", encode(rgba, "PNG")),
        ("I16.png", encode(i16, "PNG")), ("bitonal.png", encode(rgb.convert("1"), "PNG")),
        ("RGBA.webp", encode(rgba, "WEBP")), ("lossless.webp", encode(photo(s()), "WEBP", lossless=True)),
        ("P.gif", encode(pal, "GIF")), ("transparent.gif", encode(pal_t, "GIF", transparency=0)),
        ("lzw.tif", encode(photo(s()), "TIFF", compression="tiff_lzw")), ("cmyk.tif", encode(photo(s()).convert(
            "CMYK"), "TIFF")), ("I16.tif", encode(i16, "TIFF")), ("RGBA.tif", encode(rgba, "TIFF")),
        ("P.bmp", encode(pal, "BMP")), ("L.bmp", encode(rgb.convert("L"), "BMP")),
        ("animated.gif", animated("GIF", s())), ("animated.webp", animated("WEBP", s())),
        ("animated.png", animated("PNG", s())),
    ]
    multipage = io.BytesIO()
    photo(s()).save(multipage, "TIFF", save_all=True, append_images=[photo(s())])
    cases.append(("multipage.tif", multipage.getvalue()))
    if lean:  # tests/broken_images already holds CMYK and progressive JPEGs, LA, P, RGBA, I;16 PNGs, animations
        cases = [c for c in cases if c[0] in LEAN_MODES]
    for name, data in cases:
        b.add(os.path.join(d, name.encode()), data, GOOD, f"colour mode / variant {name}")
    for orientation in ((3, 5, 8) if lean else range(1, 9)):
        b.add(os.path.join(d, b"exif_orientation_%d.jpg" % orientation), oriented_jpeg(orientation, (72, 40)), GOOD,
              f"JPEG with EXIF orientation {orientation}")


def _bad(b: _Builder, d: bytes, lean: bool) -> None:
    for fmt in FORMATS:
        ext = EXT[fmt].encode()
        b.add(os.path.join(d, b"truncated" + ext), truncated(fmt, b.next_seed()), BAD, f"truncated {fmt}")
        b.add(os.path.join(d, b"corrupted" + ext), corrupted(fmt, b.next_seed()), BAD, f"corrupted {fmt}")
    for ext in (b".jpeg", b".webp", b".tiff") if lean else (b".jpg", b".jpeg", b".png", b".webp", b".gif", b".tif",
                                                             b".tiff", b".bmp"):
        b.add(os.path.join(d, b"empty" + ext), b"", BAD, f"zero bytes ({ext.decode()})")
    bombs = {b"bomb_header.png": bomb_png(), b"bomb_valid.png": bomb_png_valid(), b"bomb.gif": bomb_gif(),
             b"bomb.jpg": bomb_jpeg(), b"bomb.bmp": bomb_bmp(), b"bomb.tif": bomb_tiff(), b"bomb.webp": bomb_webp()}
    for name, data in bombs.items():
        b.add(os.path.join(d, name), data, BAD, f"decompression bomb {name.decode()}")
    others = {
        b"pdf.png": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
        b"zip.gif": b"PK\x03\x04" + b"\x00" * 60,
        b"svg.png": b'<svg xmlns="http://www.w3.org/2000/svg" width="9999999" height="9999999"><rect/></svg>',
        b"eps.jpg": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n(pwned) print showpage\n",
        b"script.jpeg": b"#!/bin/sh\necho pwned > /tmp/picseek-stress-pwned\n",
        b"elf.bmp": b"\x7fELF\x02\x01\x01" + b"\x00" * 57,
        b"gzip.webp": b"\x1f\x8b\x08\x00" + b"\x00" * 40,
        b"ico.png": encode(photo(b.next_seed(), (32, 32)), "ICO"),
        b"pcx.jpg": encode(photo(b.next_seed(), (32, 32)), "PCX"),
        b"random.tif": np.random.default_rng(b.next_seed()).integers(0, 256, 3000, dtype=np.uint8).tobytes(),
        b"nul_bytes.jpg": b"\x00" * 1000,
    }
    for name, data in others.items():
        if lean and name not in LEAN_OTHERS:
            continue
        b.add(os.path.join(d, name), data, BAD, f"not a photo: {name.decode()}")
    for name, kind in BAD_NAMES:
        fmt = {b".jpg": "JPEG", b".png": "PNG", b".gif": "GIF"}[os.path.splitext(name)[1]]
        b.add(os.path.join(d, name), truncated(fmt, b.next_seed()), BAD, kind)


def _broken_images(b: _Builder, d: bytes) -> None:
    folder = os.path.join(b.m.root, d)
    for name, verdict in make_broken_images(os.fsdecode(folder)).items():
        b.add(os.path.join(d, name.encode()), None, BAD if verdict == BROKEN_BAD else GOOD,
              f"tests/broken_images {name}")


def _names(b: _Builder, d: bytes) -> None:
    for name, kind in HOSTILE_NAMES:
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".gif": "GIF",
               ".bmp": "BMP"}[os.path.splitext(name)[1].decode().lower()]
        b.add(os.path.join(d, name), good_bytes(fmt, b.next_seed()), GOOD, kind)
    b.add(os.path.join(d, b"dir_\xff\x1b[7m", b"inside.jpg"), good_bytes("JPEG", b.next_seed()), GOOD,
          "file in a folder with a non-UTF-8, escape-laden name")
    b.add(os.path.join(d, b"folder.jpg", b"inside.png"), good_bytes("PNG", b.next_seed()), GOOD,
          "file in a folder named like a photo")
    deep = os.path.join(d, *[b"d"] * 60, b"deep.jpg")
    b.add(deep, good_bytes("JPEG", b.next_seed()), GOOD, "60 folders deep")
    budget = 3600 - len(b.m.root) - len(d)  # a long path, well within PATH_MAX (4096)
    parts, used = [], 0
    while used + 221 < budget - 260:
        parts.append(b"%02d" % len(parts) + b"p" * 218)
        used += 221
    b.add(os.path.join(d, *parts, b"n" * 251 + b".png"), good_bytes("PNG", b.next_seed()), GOOD,
          f"long path ({len(parts)} folders of 220 bytes, then a 255-byte name)")


def _links(b: _Builder, d: bytes) -> None:
    folder = os.path.join(b.m.root, d)
    os.makedirs(folder, exist_ok=True)
    target = b.add(os.path.join(d, b"real.jpg"), good_bytes("JPEG", b.next_seed()), GOOD, "link target")
    os.symlink(b"real.jpg", os.path.join(folder, b"inside_link.jpg"))
    b.add(os.path.join(d, b"inside_link.jpg"), None, GOOD, "symlink to a photo inside the folder")
    os.link(target, os.path.join(folder, b"hard_link.jpg"))
    b.add(os.path.join(d, b"hard_link.jpg"), None, GOOD, "hard link to a photo")
    os.symlink(b"does-not-exist.jpg", os.path.join(folder, b"dangling.jpg"))
    b.add(os.path.join(d, b"dangling.jpg"), None, ABSENT, "dangling symlink")
    os.symlink(b"loop_b.jpg", os.path.join(folder, b"loop_a.jpg"))
    os.symlink(b"loop_a.jpg", os.path.join(folder, b"loop_b.jpg"))
    os.symlink(b"self.png", os.path.join(folder, b"self.png"))
    for name in (b"loop_a.jpg", b"loop_b.jpg", b"self.png"):
        b.add(os.path.join(d, name), None, ABSENT, "symlink loop")
    os.symlink(b"..", os.path.join(folder, b"up"))  # a folder loop: the walk must visit each folder once
    os.symlink(b".", os.path.join(folder, b"here"))
    for name in (b"up", b"here"):  # (reporting the loop is allowed, following it is not)
        b.add(os.path.join(d, name), None, ABSENT, "symlink to a folder that contains it")
    out_photo = os.path.join(b.m.outside, b"outside_photo.jpg")
    _write(out_photo, good_bytes("JPEG", b.next_seed()))
    os.symlink(out_photo, os.path.join(folder, b"outside_link.jpg"))
    b.add(os.path.join(d, b"outside_link.jpg"), None, ABSENT, "symlink to a photo outside the folder")
    out_dir = os.path.join(b.m.outside, b"photos")
    _write(os.path.join(out_dir, b"p.jpg"), good_bytes("JPEG", b.next_seed()))
    os.symlink(out_dir, os.path.join(folder, b"outside_dir"))
    b.add(os.path.join(d, b"outside_dir"), None, ABSENT, "symlink to a folder outside the folder")
    b.add(os.path.join(d, b"outside_dir", b"p.jpg"), None, ABSENT, "photo in a linked folder outside the folder")
    os.symlink(b"/etc/passwd", os.path.join(folder, b"passwd.jpg"))
    b.add(os.path.join(d, b"passwd.jpg"), None, ABSENT, "symlink to /etc/passwd named .jpg")


def _special(b: _Builder, d: bytes, lean: bool) -> None:
    s = b.next_seed
    for name in (b".hidden.jpg", b".hidden_dir/inside.jpg", b"._apple_double.jpg", b"sub/.also_hidden.png"):
        b.add(os.path.join(d, name), good_bytes("JPEG", s()), IGNORED, "hidden")
    others = (b"notes.txt", b"photo.jpg.txt", b"image.jpgx", b"no_extension", b"archive.tar.gz", b"vector.svg",
              b"raw.cr2", b"trailing_dot.jpg.")
    for name in others[1::3] if lean else others:
        b.add(os.path.join(d, name), good_bytes("JPEG", s()), IGNORED, "not an image extension")
    dup = good_bytes("PNG", s())
    b.add(os.path.join(d, b"dup_a.png"), dup, GOOD, "duplicate content (first name)")
    b.add(os.path.join(d, b"sub", b"dup_b.png"), dup, GOOD, "duplicate content (second name)")
    fifo = os.path.join(b.m.root, d, b"fifo.jpg")
    os.makedirs(os.path.dirname(fifo), exist_ok=True)
    os.mkfifo(fifo)
    b.add(os.path.join(d, b"fifo.jpg"), None, ABSENT, "a FIFO named .jpg (reading it would block)")
    locked = b.add(os.path.join(d, b"unreadable.jpg"), good_bytes("JPEG", s()), GOOD if IS_ROOT else BAD,
                   "chmod 000 file" + (" (root reads it anyway)" if IS_ROOT else ""))
    os.chmod(locked, 0)
    inner = b.add(os.path.join(d, b"locked_dir", b"inside.jpg"), good_bytes("JPEG", s()),
                  GOOD if IS_ROOT else ABSENT, "file in a chmod 000 folder" + (" (root)" if IS_ROOT else ""))
    os.chmod(os.path.dirname(inner), 0)


def make_corpus(folder: str | os.PathLike, *, good: int = 30, copies: int = 1, seed: int = 0, lean: bool = False,
                giant_sparse: bool = False) -> Manifest:
    """Write the corpus into `folder`/corpus (and its outside targets into `folder`/outside); return the manifest.
    `good` plain photos, then `copies` of the hostile sets (each in its own sub-folder, with other pixels).
    lean leaves out the colour modes, zero-byte extensions and non-images that repeat a case (tests in CI);
    giant_sparse adds a 2.5 GB sparse file named .jpg (BAD: over the 2 GiB file limit; costs a few seconds)."""
    base = os.fsencode(os.path.realpath(folder))
    root, outside = os.path.join(base, b"corpus"), os.path.join(base, b"outside")
    os.makedirs(root)
    os.makedirs(outside)
    b = _Builder(root, outside, seed * 100_003)
    _good_set(b, b"a_good", good)
    for k in range(copies):
        d = b"hostile_%02d" % k
        _modes(b, os.path.join(d, b"modes"), lean)
        _broken_images(b, os.path.join(d, b"broken"))
        _bad(b, os.path.join(d, b"bad"), lean)
        _names(b, os.path.join(d, b"names"))
        _links(b, os.path.join(d, b"links"))
        _special(b, os.path.join(d, b"special"), lean)
    b.add(os.path.join(b"z_swap", b"photo.jpg"), good_bytes("JPEG", b.next_seed()), GOOD,
          "photo in the folder that the symlink-swap check replaces by a link to outside/swap_target")
    if giant_sparse:
        path = b.add(b"giant_sparse.jpg", b"\xff\xd8\xff\xe0", BAD, "2.5 GB sparse file (over the file limit)")
        os.truncate(path, 2_500_000_000)
    secret_txt = os.path.join(outside, b"secret.txt")
    _write(secret_txt, b"root:x:0:0:" + SECRET_MARK + b"\n")
    _write(os.path.join(outside, b"secret.jpg"), jpeg_with_secret())
    _write(os.path.join(outside, b"swap_target", b"photo.jpg"), jpeg_with_secret())
    b.m.secrets += [secret_txt, os.path.join(outside, b"secret.jpg"),
                    os.path.join(outside, b"swap_target", b"photo.jpg")]
    return b.m
