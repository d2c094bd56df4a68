"""Thumbnails inline in the terminal (`picseek search --preview`): the kitty graphics protocol, iTerm2's inline
images (also WezTerm, Konsole, mintty) or sixel, chosen from what the terminal says it is; none at all when stdout
is not a terminal (no escape code ever reaches a pipe or a file) or the terminal is not known to draw images.

    auto    kitty where TERM is xterm-kitty or KITTY_WINDOW_ID is set (also Ghostty); iterm where TERM_PROGRAM is
            iTerm.app, WezTerm or mintty (or LC_TERMINAL is iTerm2); sixel where TERM names a sixel terminal
            (foot, mlterm, yaft, contour); else none
    kitty / iterm / sixel   that protocol, when stdout is a terminal
    none    no previews
"""
from __future__ import annotations

import base64
import io
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # (numpy and Pillow load only when a preview is drawn: the CLI starts without them)
    import numpy as np
    from PIL import Image


PROTOCOLS = ("auto", "kitty", "iterm", "sixel", "none")
SIXEL_TERMS = ("foot", "mlterm", "yaft", "contour")
ITERM_PROGRAMS = ("iTerm.app", "WezTerm", "mintty")
CELL_ROWS = 6  # the preview's height in terminal rows (about 120 px in most terminals)
SIZE = 160  # the thumbnail's longest side in pixels


def detect(env: Mapping[str, str] | None = None) -> str:
    """The protocol the terminal described by `env` (default: os.environ) draws, or "none"."""
    env = os.environ if env is None else env
    term, program = env.get("TERM", ""), env.get("TERM_PROGRAM", "")
    if term == "xterm-kitty" or env.get("KITTY_WINDOW_ID") or program == "ghostty" or term == "xterm-ghostty":
        return "kitty"
    if program in ITERM_PROGRAMS or env.get("LC_TERMINAL") == "iTerm2":
        return "iterm"
    if any(term.startswith(t) for t in SIXEL_TERMS):
        return "sixel"
    return "none"


def choose(asked: str, stream: TextIO, env: Mapping[str, str] | None = None) -> str:
    """The protocol to draw with: none unless `stream` is a terminal; `auto` detected."""
    if asked == "none" or not _isatty(stream):
        return "none"
    return detect(env) if asked == "auto" else asked


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def thumbnail(image: Image.Image, size: int = SIZE) -> Image.Image:
    img = image.convert("RGB")
    img.thumbnail((size, size))
    return img


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def kitty(img: Image.Image, rows: int = CELL_ROWS) -> str:
    """The kitty graphics protocol: a PNG sent in base64 chunks of at most 4096 bytes, `rows` cells high."""
    data = base64.standard_b64encode(_png(img)).decode("ascii")
    chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)] or [""]
    out = []
    for n, chunk in enumerate(chunks):
        more = int(n < len(chunks) - 1)
        head = f"a=T,f=100,r={rows},q=2,m={more}" if n == 0 else f"m={more}"
        out.append(f"\x1b_G{head};{chunk}\x1b\\")
    return "".join(out) + "\n"


def iterm(img: Image.Image, rows: int = CELL_ROWS) -> str:
    """iTerm2's inline image (OSC 1337 File=), `rows` cells high, aspect ratio kept."""
    data = _png(img)
    b64 = base64.standard_b64encode(data).decode("ascii")
    return f"\x1b]1337;File=inline=1;size={len(data)};height={rows};preserveAspectRatio=1:{b64}\x07\n"


def sixel(img: Image.Image) -> str:
    """DEC sixel graphics: the image in at most 256 colours (Pillow's quantizer), six pixel rows per band, each
    colour's runs length-encoded."""
    import numpy as np

    pal_img = img.quantize(colors=256)
    arr = np.asarray(pal_img)
    height, width = arr.shape
    palette = pal_img.getpalette()[: 3 * 256]
    out = [f'\x1bPq"1;1;{width};{height}']
    for c in np.unique(arr).tolist():
        r, g, b = (round(v * 100 / 255) for v in palette[3 * c:3 * c + 3])
        out.append(f"#{c};2;{r};{g};{b}")
    weights = (1 << np.arange(6))[:, None]
    for top in range(0, height, 6):
        band = arr[top:top + 6]
        colours = np.unique(band).tolist()
        for k, c in enumerate(colours):
            bits = ((band == c) * weights[:len(band)]).sum(axis=0)
            out.append(f"#{c}" + _runs(bits) + ("$" if k < len(colours) - 1 else ""))
        out.append("-")
    out.append("\x1b\\\n")
    return "".join(out)


def _runs(bits: np.ndarray) -> str:
    """Sixel characters for one colour of a band, repeated runs as !N."""
    import numpy as np

    starts = np.flatnonzero(np.r_[True, bits[1:] != bits[:-1]])
    lengths = np.diff(np.r_[starts, len(bits)])
    return "".join(f"!{n}{chr(63 + int(bits[i]))}" if n > 3 else chr(63 + int(bits[i])) * int(n)
                   for i, n in zip(starts, lengths))


def render(image: Image.Image, protocol: str) -> str:
    """The escape sequence that draws `image` as a preview ("" for none)."""
    if protocol == "none":
        return ""
    img = thumbnail(image)
    return {"kitty": kitty, "iterm": iterm, "sixel": sixel}[protocol](img)
