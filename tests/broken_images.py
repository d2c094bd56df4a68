"""A folder of files that break image decoders, and awkward ones that must still decode.

`make_broken_images(folder)` writes one file per kind and returns {file name: "bad" | "ok"}. Unit tests check
every kind through `decode_file`/`load_image`; indexing tests drop the folder into a library and count the
results.
Everything is small and made in a few milliseconds.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

BAD = "bad"
OK = "ok"


def _gradient(w: int, h: int) -> np.ndarray:
    """An RGB image with structure (so JPEG artefacts and crops show), not a flat colour."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(1, w - 1)).astype(np.uint8)
    g = (y * 255 // max(1, h - 1)).astype(np.uint8)
    b = (((x // 8 + y // 8) % 2) * 255).astype(np.uint8)
    return np.dstack([r, g, b])


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming a huge 1-bit image, plus one tiny IDAT: a bomb's header, ~70 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    chunks = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def oriented_jpeg(orientation: int = 6, size: tuple[int, int] = (60, 40)) -> bytes:
    """A JPEG stored landscape (left half red, right half blue) with an EXIF orientation tag."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)
    a[:, w // 2:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _jpeg_bytes(Image.fromarray(a), exif=exif.tobytes())


def _noise_jpeg() -> bytes:
    rng = np.random.default_rng(1)
    return _jpeg_bytes(Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)))


def _palette_alpha() -> bytes:
    img = Image.fromarray(_gradient(48, 32)).quantize(16)
    img.info["transparency"] = 0  # palette entry 0 fully transparent (PNG tRNS)
    return _png_bytes(img, transparency=0)


def _animated(fmt: str) -> bytes:
    colours = ((200, 30, 30), (30, 200, 30), (30, 30, 200))
    frames = [Image.fromarray(np.full((24, 32, 3), c, np.uint8)) for c in colours]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def _kinds() -> dict[str, tuple[str, bytes]]:
    grad = Image.fromarray(_gradient(64, 48))
    jpeg = _noise_jpeg()
    png = _png_bytes(Image.fromarray(np.random.default_rng(2).integers(0, 256, (96, 96, 3), dtype=np.uint8)))
    gray16 = Image.fromarray((np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16))
    alpha = np.broadcast_to(np.linspace(0, 255, 40).astype(np.uint8), (30, 40))  # clear left, opaque right
    la = Image.fromarray(np.dstack([np.full((30, 40), 20, np.uint8), alpha]), "LA")
    return {
        # bad: each must be an error record, never an exception
        "empty.jpg": (BAD, b""),
        "truncated.jpg": (BAD, jpeg[: len(jpeg) // 2]),
        "truncated.png": (BAD, png[: len(png) // 2]),
        "text.jpg": (BAD, b"These are my holiday notes, not a photo.\nDay 1: beach.\n" * 20),
        "random.png": (BAD, np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        "html.png": (BAD, b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
                          b"<body><h1>Not Found</h1></body></html>\n"),
        "bomb.png": (BAD, bomb_png()),
        # ok: valid but awkward; each must decode to model-ready pixels
        "cmyk.jpg": (OK, _jpeg_bytes(grad.convert("CMYK"))),
        "gray16.png": (OK, _png_bytes(gray16)),
        "palette_alpha.png": (OK, _palette_alpha()),
        "la.png": (OK, _png_bytes(la)),
        "rgba.png": (OK, _png_bytes(grad.convert("RGBA"))),
        "bitonal.png": (OK, _png_bytes(grad.convert("1"))),
        "png_named.jpg": (OK, _png_bytes(grad)),
        "animated.gif": (OK, _animated("GIF")),
        "animated.webp": (OK, _animated("WEBP")),
        "tiny.png": (OK, _png_bytes(Image.new("RGB", (1, 1), (10, 120, 250)))),
        "wide.jpg": (OK, _jpeg_bytes(Image.fromarray(_gradient(4000, 10)))),
        "rotated6.jpg": (OK, oriented_jpeg(6)),
    }


def make_broken_images(folder: str | Path) -> dict[str, str]:
    """Write one file per kind into `folder` (created if missing); return {file name: "bad" | "ok"}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (verdict, data) in _kinds().items():
        (folder / name).write_bytes(data)
        expected[name] = verdict
    return expected
