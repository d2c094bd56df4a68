"""Safe decoding: bad files become error records, awkward ones decode, EXIF is read, JPEGs decode small."""
from __future__ import annotations

import io
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image

from picseek.errors import ImageError
from picseek.ingest import images
from picseek.ingest.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    Decoded,
    decode_file,
    file_hash,
    load_image,
    read_info,
)
from picseek.models.base import ImageSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from broken_images import make_broken_images, oriented_jpeg  # noqa: E402

SPEC = ImageSpec()
EXPECTED_REASON = {
    "empty.jpg": "empty file (0 bytes)",
    "truncated.jpg": "truncated JPEG",
    "truncated.png": "truncated PNG",
    "text.jpg": "not an image (looks like text)",
    "random.png": "not an image",
    "html.png": "not an image (looks like HTML)",
    "bomb.png": "image too large: 100000x100000 pixels (limit 250 MP)",
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("zoo")
    return folder, make_broken_images(folder)


def _names(verdict: str) -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        return sorted(n for n, v in make_broken_images(d).items() if v == verdict)


def _jpeg(path: Path, size: tuple[int, int], **save) -> Path:
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    a = np.dstack([x * 255 // w, y * 255 // h, (x + y) % 256]).astype(np.uint8)
    Image.fromarray(a).save(path, "JPEG", quality=85, **save)
    return path


def test_every_kind_has_a_reason_or_decodes(zoo):
    _, expected = zoo
    assert set(EXPECTED_REASON) == {n for n, v in expected.items() if v == "bad"}
    assert len([v for v in expected.values() if v == "ok"]) >= 9


@pytest.mark.parametrize("name", _names("bad"))
def test_bad_file_is_an_error_record(zoo, name):
    folder, _ = zoo
    d = decode_file(str(folder / name), SPEC)
    assert isinstance(d, Decoded)
    assert d.pixels is None and d.info is None
    assert d.error is not None and "\n" not in d.error
    assert d.error.startswith(EXPECTED_REASON[name]), d.error
    assert d.content_hash == file_hash(folder / name)


@pytest.mark.parametrize("name", _names("bad"))
def test_load_image_raises_image_error_for_bad_file(zoo, name):
    folder, _ = zoo
    with pytest.raises(ImageError) as info:
        load_image(str(folder / name))
    msg = str(info.value)
    assert EXPECTED_REASON[name] in msg and name in msg and "\n" not in msg
    with pytest.raises(ImageError):
        load_image((folder / name).read_bytes())


@pytest.mark.parametrize("name", _names("ok"))
@pytest.mark.parametrize("spec", [SPEC, ImageSpec(size=32, resize="squash", resample="bilinear")])
def test_awkward_but_valid_file_decodes(zoo, name, spec):
    folder, _ = zoo
    d = decode_file(str(folder / name), spec)
    assert d.error is None, d.error
    assert d.pixels is not None and d.pixels.shape == (spec.size, spec.size, 3) and d.pixels.dtype == np.uint8
    assert d.info is not None and d.info.width >= 1 and d.info.height >= 1
    assert d.content_hash == file_hash(folder / name)
    assert d.content_hash.startswith("b3:") and len(d.content_hash) == 3 + 32


@pytest.mark.parametrize("name", _names("ok"))
def test_load_image_accepts_path_bytes_and_file(zoo, name):
    folder, _ = zoo
    path = folder / name
    for source in (str(path), path, path.read_bytes(), io.BytesIO(path.read_bytes())):
        img = load_image(source)
        img.load()
        assert img.width >= 1 and img.height >= 1


def test_colour_modes_come_out_right(zoo):
    folder, _ = zoo
    squash = ImageSpec(size=32, resize="squash")

    def px(name):
        return decode_file(str(folder / name), squash).pixels.astype(int)

    assert (px("palette_alpha.png") == 255).all(axis=2).any()  # transparent palette entry -> white
    la = px("la.png")
    assert la[:, 0].min() > 200 and la[:, -1].max() < 60  # clear left edge white, opaque right side dark
    gray16 = px("gray16.png")
    assert gray16.min() < 10 and gray16.max() > 200  # 16-bit range scaled, not clipped to white
    assert np.abs(px("cmyk.jpg").astype(int) - px("rgba.png")).mean() < 12  # CMYK converted, not inverted
    assert np.abs(px("animated.gif")[16, 16] - (200, 30, 30)).max() < 10  # first frame
    assert np.abs(px("animated.webp")[16, 16] - (200, 30, 30)).max() < 10


def test_content_decides_the_format_not_the_extension(zoo):
    folder, _ = zoo
    d = decode_file(str(folder / "png_named.jpg"), SPEC)
    assert d.error is None and d.info.format == "PNG"


def test_orientation_6_swaps_size_and_rotates_pixels(tmp_path):
    path = tmp_path / "r.jpg"
    path.write_bytes(oriented_jpeg(6, (60, 40)))  # stored 60x40: left red, right blue
    d = decode_file(str(path), ImageSpec(size=32, resize="squash"))
    assert (d.info.width, d.info.height, d.info.orientation) == (40, 60, 6)
    top, bottom = d.pixels[4, 16].astype(int), d.pixels[28, 16].astype(int)
    assert top[0] > 200 and top[2] < 60  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60
    img = load_image(path)
    assert img.size == (40, 60)
    again = read_info(img)  # the tag is gone from the transposed image: no second swap
    assert (again.width, again.height) == (40, 60) and again.orientation in (None, 1)


def _spy_on_prepare(monkeypatch) -> list[tuple[int, int]]:
    """Record the size of every image decode_file hands to prepare_image."""
    seen: list[tuple[int, int]] = []
    real = images.prepare_image

    def spy(img, spec):
        seen.append(img.size)
        return real(img, spec)

    monkeypatch.setattr(images, "prepare_image", spy)
    return seen


def test_draft_mode_decodes_a_big_jpeg_small(tmp_path, monkeypatch):
    path = _jpeg(tmp_path / "big.jpg", (3000, 2000))
    seen = _spy_on_prepare(monkeypatch)
    d = decode_file(str(path), SPEC)
    assert d.error is None and d.pixels.shape == (224, 224, 3)
    assert (d.info.width, d.info.height) == (3000, 2000)  # the full size, not the draft size
    (w, h), = seen
    assert w < 3000 and h < 2000  # libjpeg scaled the decode down (1/8: 375 x 250)
    assert min(w, h) >= SPEC.size  # ...but never below the model's input


def test_draft_factor_and_full_decode(tmp_path, monkeypatch):
    path = _jpeg(tmp_path / "big.jpg", (3000, 2000))
    seen = _spy_on_prepare(monkeypatch)
    twice = decode_file(str(path), SPEC, draft=2)
    full = decode_file(str(path), SPEC, draft=None)
    assert twice.error is None and full.error is None
    assert min(seen[0]) >= 2 * SPEC.size and seen[0][0] < 3000  # 1/4: 750 x 500
    assert seen[1] == (3000, 2000)  # the reference: no draft
    assert twice.info == full.info  # what is recorded about the photo does not depend on the decode scale


def test_draft_mode_with_orientation_keeps_full_rotated_size(tmp_path, monkeypatch):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 8
    path = _jpeg(tmp_path / "big8.jpg", (3000, 2000), exif=exif.tobytes())
    seen = _spy_on_prepare(monkeypatch)
    d = decode_file(str(path), SPEC)
    assert (d.info.width, d.info.height) == (2000, 3000)
    (w, h), = seen
    assert h > w and h < 3000


def _exif_jpeg(path: Path, exif: Image.Exif) -> Path:
    Image.new("RGB", (30, 20), (90, 120, 150)).save(path, "JPEG", exif=exif.tobytes())
    return path


def test_exif_fields_are_read(tmp_path):
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "Canon EOS R5\x00"
    exif[ExifTags.Base.DateTime] = "2022:01:01 00:00:00"
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[ExifTags.Base.DateTimeOriginal] = "2021:06:01 14:03:22"
    sub[ExifTags.Base.OffsetTimeOriginal] = "+02:00"
    sub[ExifTags.Base.LensModel] = "RF24-105mm F4 L IS USM"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "S"
    gps[ExifTags.GPS.GPSLatitude] = (33.0, 51.0, 36.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (151.0, 12.0, 36.0)
    d = decode_file(str(_exif_jpeg(tmp_path / "e.jpg", exif)), SPEC)
    info = d.info
    assert (info.width, info.height, info.format) == (30, 20, "JPEG")
    assert info.taken_at == "2021-06-01T14:03:22+02:00"
    assert (info.camera_make, info.camera_model) == ("Canon", "Canon EOS R5")
    assert info.lens == "RF24-105mm F4 L IS USM"
    assert info.gps_lat == pytest.approx(-33.86) and info.gps_lon == pytest.approx(-151.21)
    assert read_info(Image.open(tmp_path / "e.jpg")) == info


def test_taken_at_falls_back_and_ignores_junk(tmp_path):
    exif = Image.Exif()
    exif[ExifTags.Base.DateTime] = "2019:12:24 18:30:00"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "0000:00:00 00:00:00"
    info = decode_file(str(_exif_jpeg(tmp_path / "a.jpg", exif)), SPEC).info
    assert info.taken_at == "2019-12-24T18:30:00"
    assert info.camera_make is None and info.gps_lat is None and info.orientation is None


def test_bad_gps_is_dropped_not_fatal(tmp_path):
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "X"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (123.0, 0.0, 0.0)  # out of range
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (10.0, 0.0, 0.0)
    d = decode_file(str(_exif_jpeg(tmp_path / "g.jpg", exif)), SPEC)
    assert d.error is None and d.info.camera_make == "X"
    assert d.info.gps_lat is None and d.info.gps_lon is None


def test_max_pixels_is_checked_from_the_header(tmp_path):
    path = _jpeg(tmp_path / "m.jpg", (100, 100))
    d = decode_file(str(path), SPEC, max_pixels=5000)
    assert d.error == "image too large: 100x100 pixels (limit 0.005 MP)"
    assert d.content_hash == file_hash(path)
    with pytest.raises(ImageError, match="image too large"):
        load_image(path, max_pixels=5000)


def test_our_limit_not_pillows_decides(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone would refuse anything over 2000 px
    path = _jpeg(tmp_path / "p.jpg", (100, 100))
    assert decode_file(str(path), SPEC).error is None
    assert load_image(path).size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
    assert decode_file(str(path), SPEC, max_pixels=5000).error.startswith("image too large: 100x100")


def test_unreadable_files(tmp_path):
    d = decode_file(str(tmp_path / "missing.jpg"), SPEC)
    assert d.error.startswith("cannot read file") and d.content_hash == "" and d.pixels is None
    d = decode_file(str(tmp_path), SPEC)  # a directory
    assert d.error.startswith("cannot read file") and d.content_hash == ""
    with pytest.raises(ImageError, match="cannot read image"):
        load_image(tmp_path / "missing.jpg")


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(40), "HEIC"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "not an image (looks like a PDF document)"),
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "not a raster image"),
    (b"\xff\xd8\xff\xe0\x00\x10JF", "corrupt or truncated JPEG"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "corrupt or truncated PNG"),
])
def test_reasons_name_what_the_file_is(tmp_path, data, reason):
    if reason == "HEIC" and images._HAS_HEIF:
        pytest.skip("pillow-heif installed")
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    assert reason in decode_file(str(path), SPEC).error


def test_decoded_is_small_and_picklable(zoo):
    folder, _ = zoo
    d = decode_file(str(folder / "cmyk.jpg"), SPEC)
    blob = pickle.dumps(d)
    assert len(blob) < 200_000
    back = pickle.loads(blob)
    assert back.info == d.info and np.array_equal(back.pixels, d.pixels)


def test_extensions_and_defaults():
    assert {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"} <= IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
    assert (".heic" in IMAGE_EXTENSIONS) == images._HAS_HEIF
    assert DEFAULT_MAX_PIXELS == 250_000_000


def test_images_module_does_not_import_torch():
    import subprocess

    code = "import sys, picseek.ingest.images; assert 'torch' not in sys.modules, 'torch imported'"
    src = str(Path(images.__file__).parents[2])
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": src})


# ---------------------------------------------------------------------------------------------------- fuzzing

def _valid_seeds() -> list[bytes]:
    a = np.random.default_rng(5).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    out = []
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, fmt)
        out.append(buf.getvalue())
    return out


_SEEDS = _valid_seeds()
_MAGICS = [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"II*\x00",
           b"BM"]


@st.composite
def _mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


_FUZZ = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda m, b: m + b, st.sampled_from(_MAGICS), st.binary(max_size=1024)),
    _mutated(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_FUZZ)
def test_decode_file_never_raises(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.jpg"
        path.write_bytes(data)
        out = decode_file(str(path), ImageSpec(size=16))
    assert isinstance(out, Decoded)
    if out.error is None:
        assert out.pixels.shape == (16, 16, 3) and out.pixels.dtype == np.uint8 and out.info is not None
    else:
        assert out.pixels is None and out.error and "\n" not in out.error
    try:
        load_image(data)
    except ImageError:
        pass


def test_the_ocr_decode_is_oriented_and_about_ocr_side_long(tmp_path):
    """The second decode of an image the OCR's first pass lets through: JPEG draft no smaller than OCR_SIDE on the
    long side, EXIF orientation applied, then scaled to OCR_SIDE; a small image is left as it is."""
    from picseek.ingest.images import _ocr_image

    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    big = io.BytesIO()
    Image.new("RGB", (2600, 1000), "white").save(big, "JPEG", exif=exif.tobytes())
    img = _ocr_image(big.getvalue(), 10**9, 1280)
    assert img.size == (492, 1280)  # upright: tall
    small = io.BytesIO()
    Image.new("RGB", (300, 100), "white").save(small, "PNG")
    assert _ocr_image(small.getvalue(), 10**9, 1280).size == (300, 100)


def test_feeding_the_decoder_in_one_piece_gives_the_same_pixels(tmp_path, monkeypatch):
    """decode_file hands Pillow's decoder the whole file at once (issue 20): the same pixels as its 64 KiB pieces,
    and a truncated file is still refused."""
    rng = np.random.default_rng(3)
    path = tmp_path / "noisy.jpg"
    Image.fromarray(rng.integers(0, 256, (900, 1200, 3), dtype=np.uint8)).save(path, quality=95)
    assert path.stat().st_size > 4 * 65536
    one_piece = decode_file(str(path), SPEC)
    monkeypatch.setattr(images, "_DECODE_BLOCK", 0)  # Pillow's own block size
    pieces = decode_file(str(path), SPEC)
    assert one_piece.error is None and np.array_equal(one_piece.pixels, pieces.pixels)
    monkeypatch.undo()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert decode_file(str(cut), SPEC).error == "truncated JPEG"
