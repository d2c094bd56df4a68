"""Terminal previews: which protocol a terminal gets, nothing outside a terminal, and each protocol's bytes decode
back to the thumbnail (kitty and iTerm2 carry a PNG; sixel is decoded here pixel by pixel)."""
import base64
import io
import re

import numpy as np
from PIL import Image

from picseek.cli import preview


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_detection_from_the_environment():
    assert preview.detect({"TERM": "xterm-kitty"}) == "kitty"
    assert preview.detect({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "1"}) == "kitty"
    assert preview.detect({"TERM_PROGRAM": "iTerm.app"}) == "iterm"
    assert preview.detect({"TERM_PROGRAM": "WezTerm"}) == "iterm"
    assert preview.detect({"TERM": "foot"}) == "sixel" and preview.detect({"TERM": "mlterm"}) == "sixel"
    assert preview.detect({"TERM": "xterm-256color"}) == "none" and preview.detect({}) == "none"


def test_never_into_a_pipe_or_a_file():
    assert preview.choose("auto", io.StringIO(), {"TERM": "xterm-kitty"}) == "none"
    assert preview.choose("kitty", io.StringIO()) == "none"
    assert preview.choose("auto", Tty(), {"TERM": "xterm-kitty"}) == "kitty"
    assert preview.choose("sixel", Tty(), {}) == "sixel" and preview.choose("none", Tty(), {}) == "none"
    assert preview.render(Image.new("RGB", (4, 4)), "none") == ""


def _photo(w=300, h=200) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8))


def test_kitty_sends_the_thumbnail_as_png_in_chunks():
    out = preview.render(_photo(), "kitty")
    chunks = re.findall(r"\x1b_G([^;]*);([^\x1b]*)\x1b\\", out)
    assert len(chunks) > 1 and all(len(c) <= 4096 for _, c in chunks)
    assert chunks[0][0].startswith("a=T,f=100") and chunks[-1][0].endswith("m=0") and "m=1" in chunks[0][0]
    png = Image.open(io.BytesIO(base64.b64decode("".join(c for _, c in chunks))))
    assert png.format == "PNG" and png.size == (160, 107)


def test_iterm_inline_image():
    out = preview.render(_photo(), "iterm")
    m = re.match(r"\x1b\]1337;File=inline=1;size=(\d+);height=6;preserveAspectRatio=1:([A-Za-z0-9+/=]+)\x07\n$", out)
    data = base64.b64decode(m.group(2))
    assert len(data) == int(m.group(1)) and Image.open(io.BytesIO(data)).size == (160, 107)


def _decode_sixel(text: str) -> np.ndarray:
    body = text[text.index("q") + 1:text.index("\x1b\\")]
    width, height = map(int, re.match(r'"1;1;(\d+);(\d+)', body).groups())
    body = re.sub(r'^"1;1;\d+;\d+', "", body)
    body = re.sub(r"#(\d+);2;\d+;\d+;\d+", "", body)  # colour definitions
    out = np.full((height, width), -1)
    top = 0
    for band in body.split("-")[:-1]:
        for part in band.split("$"):
            m = re.match(r"#(\d+)(.*)", part)
            colour, data, x = int(m.group(1)), m.group(2), 0
            for count, ch in re.findall(r"(?:!(\d+))?([?-~])", data):
                bits = ord(ch) - 63
                for _ in range(int(count or 1)):
                    for y in range(6):
                        if bits >> y & 1:
                            out[top + y, x] = colour
                    x += 1
        top += 6
    return out


def test_sixel_decodes_to_the_quantized_thumbnail():
    img = Image.new("RGB", (13, 11), "white")
    img.paste((200, 0, 0), (0, 0, 7, 5))
    img.paste((0, 0, 200), (3, 4, 13, 11))
    text = preview.sixel(img)
    expected = np.asarray(img.quantize(colors=256))
    assert text.startswith("\x1bPq") and text.endswith("\x1b\\\n")
    assert (_decode_sixel(text) == expected).all()
    assert "!" in preview.sixel(Image.new("RGB", (40, 6), "red"))  # runs are length-encoded
