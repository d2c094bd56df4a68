"""Text inside images (ingest/ocr.py) with the real PP-OCR models on images Pillow draws: the words are read, the boxes
are fractions of the oriented image and lie where the text was drawn, the first pass says yes to documents and no to
scikit-image's photos, other scripts do not crash it, and an EXIF-rotated JPEG decoded by picseek is read upright."""
from __future__ import annotations

import importlib.util
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageDraw, ImageFont

from picseek import extras
from picseek.errors import MissingExtraError

from needs import need_module

need_module("rapidocr_onnxruntime")
need_module("wordninja")

from picseek.ingest import ocr  # noqa: E402
from picseek.ingest.images import load_image  # noqa: E402

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
SENTENCES = ["Quarterly revenue grew by twelve percent", "Please keep this door closed at all times",
             "Fresh bread baked every morning"]


def font(size: int, name: str = "DejaVuSans.ttf") -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = FONT_DIR / name
    return ImageFont.truetype(str(path), size) if path.is_file() else ImageFont.load_default(size)


def words(text: str) -> list[str]:
    return [w for w in re.split(r"[^0-9a-z]+", text.lower()) if w]


def document(size=(900, 420), lines=SENTENCES, px=28, fill="black", paper="white"):
    """A rendered page and, per line, its drawn box as fractions (x0, y0, x1, y1)."""
    img = Image.new("RGB", size, paper)
    draw = ImageDraw.Draw(img)
    boxes, f = [], font(px)
    for i, line in enumerate(lines):
        xy = (40 + 30 * i, 50 + i * 2 * px + i * 30)
        x0, y0, x1, y1 = draw.textbbox(xy, line, font=f)
        draw.text(xy, line, font=f, fill=fill)
        boxes.append((x0 / size[0], y0 / size[1], x1 / size[0], y1 / size[1]))
    return img, boxes


@pytest.fixture(scope="module")
def reader():
    return ocr.OcrReader(threads=1)


def _recall(expected: list[str], text: str) -> float:
    seen = set(words(text))
    wanted = [w for line in expected for w in words(line)]
    return sum(w in seen for w in wanted) / len(wanted)


def test_rendered_sentences_are_read_with_boxes_where_they_were_drawn(reader):
    img, drawn = document()
    page = reader.read(img)
    assert _recall(SENTENCES, page.text) >= 0.9, page.text
    assert page.text == "\n".join(line.text for line in page.lines)
    assert len(page.lines) == len(SENTENCES)
    for line, (x0, y0, x1, y1) in zip(page.lines, drawn):  # top to bottom, as drawn
        assert len(line.box) == 4 and all(0 <= x <= 1 and 0 <= y <= 1 for x, y in line.box)
        xs, ys = [x for x, _ in line.box], [y for _, y in line.box]
        # the box holds the drawn text (a few pixels of margin) and is not much bigger
        assert min(xs) <= x0 + 0.01 and max(xs) >= x1 - 0.01, (line.text, line.box, (x0, x1))
        assert min(ys) <= y0 + 0.02 and max(ys) >= y1 - 0.02, (line.text, line.box, (y0, y1))
        assert max(ys) - min(ys) < 3 * (y1 - y0)
        assert 0.5 <= line.score <= 1


def test_words_run_together_are_spaced_and_other_text_is_kept():
    assert ocr.spaced("Noparkingbetweeneightandsix") == "No parking between eight and six"
    assert ocr.spaced("Board meetingminutesfrom  lastweek") == "Board meeting minutes from last week"
    # fewer, longer words where the frequencies alone would cut a word in two (wordninja: "In voice number")
    assert ocr.spaced("Invoicenumber 7731") == "Invoice number 7731"
    assert ocr.split_words("Paywithinthirtydays") == ["Pay", "within", "thirty", "days"]
    for kept in ("Stockholm", "Zürichstrasse", "COVIDVACCINE", "iPhone15Pro", "Москва", "北京欢迎你", "x1 y2"):
        assert ocr.spaced(kept) == kept


def test_json_round_trip_and_bad_rows():
    page = ocr.PageText((ocr.TextLine("Open daily", ((0.1, 0.2), (0.5, 0.2), (0.5, 0.3), (0.1, 0.3)), 0.97),))
    rows = page.to_json()
    assert rows == [{"text": "Open daily", "box": [[0.1, 0.2], [0.5, 0.2], [0.5, 0.3], [0.1, 0.3]], "score": 0.97}]
    assert ocr.PageText.from_json(rows) == page
    assert ocr.PageText.from_json(None) == ocr.PageText() and not ocr.PageText()
    with pytest.raises(ValueError, match="4 corners"):
        ocr.PageText.from_json([{"text": "a", "box": [[0, 0]], "score": 1}])
    with pytest.raises(ValueError, match="text, box, score"):
        ocr.PageText.from_json([{"box": [[0, 0]] * 4}])


def _small(img: Image.Image, side: int = 480) -> Image.Image:
    """What the model pipeline hands the first pass: the image at a few hundred pixels."""
    scale = side / max(img.size)
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BOX)


def test_first_pass_says_yes_to_documents_and_screenshots(reader):
    page, _ = document(size=(1280, 800), px=24)
    assert reader.likely(_small(page))
    screen, _ = document(size=(1280, 800), px=20, fill=(230, 230, 230), paper=(30, 34, 40))  # a dark-mode screen
    assert reader.likely(_small(screen))
    import skimage.data

    assert reader.likely(Image.fromarray(skimage.data.page()))  # a scanned page


def test_first_pass_says_no_to_photos_and_is_cheap(reader):
    import time

    import skimage.data

    # (not "camera": its rows of windows pass; benchmarks/ocr.py counts such photos)
    for name in ("astronaut", "coffee", "chelsea", "hubble_deep_field", "rocket", "coins"):
        photo = Image.fromarray(getattr(skimage.data, name)())
        assert not reader.likely(photo), name
        t0 = time.process_time()
        for _ in range(5):
            reader.likely(photo)
        assert (time.process_time() - t0) / 5 < 0.05, name  # a few ms; 50 ms leaves room for a slow CI machine


def test_first_pass_on_a_full_size_image_is_still_cheap_and_right(reader):
    import time

    page, _ = document(size=(4000, 3000), px=120)
    t0 = time.process_time()
    assert reader.likely(page)
    assert time.process_time() - t0 < 0.1
    assert not reader.likely(Image.new("RGB", (4000, 3000), (90, 120, 60)))


def test_first_pass_ignores_tiny_blank_and_odd_modes(reader):
    for img in (Image.new("RGB", (8, 8)), Image.new("L", (500, 375), 128), Image.new("RGBA", (400, 300)),
                Image.new("I;16", (300, 200)), Image.new("1", (300, 200))):
        assert reader.likely(img) is False
        assert reader.read(img) == ocr.PageText()


def test_an_engine_failure_is_one_image_error(reader, monkeypatch):
    from picseek.errors import ImageError

    def broken(bgr):
        raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions\nsecond line")

    reader._load()
    monkeypatch.setattr(reader, "_engine", broken)
    with pytest.raises(ImageError, match="cannot read the text in this image: RuntimeError: second line"):
        reader.read(document()[0])


def test_other_scripts_do_not_crash(reader):
    img, _ = document(lines=["Привет мир, как дела", "Ελληνικά γράμματα εδώ"], px=30)
    page = reader.read(img)
    assert isinstance(page, ocr.PageText) and all(isinstance(line.text, str) for line in page.lines)
    cjk = [p for p in ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
                       "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc") if Path(p).is_file()]
    if cjk:  # the recognition model reads Chinese: where a CJK font is installed, it must find the characters
        img = Image.new("RGB", (700, 200), "white")
        ImageDraw.Draw(img).text((40, 60), "北京欢迎你", font=ImageFont.truetype(cjk[0], 48), fill="black")
        assert "欢迎" in reader.read(img).text


def test_exif_rotated_jpeg_is_read_upright_through_picseeks_decoder(reader, tmp_path):
    upright, drawn = document(size=(900, 420), lines=SENTENCES[:1], px=32)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes (orientation 6)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=90, exif=exif)
    path = tmp_path / "sideways.jpg"
    path.write_bytes(buf.getvalue())
    assert Image.open(path).size == (420, 900)

    img = load_image(path, draft=ocr.OCR_SIDE)
    assert img.size == (900, 420)
    page = reader.read(img)
    assert _recall(SENTENCES[:1], page.text) >= 0.9, page.text
    x0, y0, x1, y1 = drawn[0]
    ys = [y for _, y in page.lines[0].box]
    assert min(ys) <= y0 + 0.02 and max(ys) >= y1 - 0.02  # in the oriented image's fractions


def test_big_images_are_read_at_ocr_side(reader, monkeypatch):
    seen = []
    engine = reader._load()
    monkeypatch.setattr(reader, "_engine", lambda bgr: seen.append(bgr.shape) or engine(bgr))
    img, _ = document(size=(2400, 600), lines=SENTENCES[:1], px=64)
    page = reader.read(img)
    assert max(seen[0][:2]) == ocr.OCR_SIDE
    assert _recall(SENTENCES[:1], page.text) >= 0.9
    assert 0.01 < min(x for x, _ in page.lines[0].box) < 0.03  # drawn at x = 40 of 2400


def test_without_the_extra_the_reader_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(extras, "find_spec", lambda name, *a: None if name == "rapidocr_onnxruntime"
                        else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'picseek\[ocr\]'") as exc:
        ocr.OcrReader()
    assert "\n" not in str(exc.value) and "torch" not in str(exc.value)


def test_boxes_are_fractions_of_any_size():
    assert np.allclose(ocr._side_lengths(np.array([[0, 0], [10, 0], [10, 4], [0, 4]], float)), (10, 4))
