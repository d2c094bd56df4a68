"""Images with words on them for the OCR tests: text drawn with Pillow's own font (or a given one) on a plain or
photo-like background, small enough that the OCR models read one in well under a second on a slow CPU."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

CJK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
             "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


def text_image(lines: list[str], size: tuple[int, int] = (560, 240), font_size: int = 34,
               background: str = "white", ink: str = "black", font: str | None = None) -> Image.Image:
    """`lines` of text drawn left-aligned, one under the other, on a plain background."""
    img = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(img)
    face = ImageFont.truetype(font, font_size) if font else ImageFont.load_default(size=font_size)
    y = font_size // 2
    for line in lines:
        draw.text((font_size // 2, y), line, fill=ink, font=face)
        y += int(font_size * 1.5)
    return img


def cjk_font() -> str | None:
    """A font with Chinese characters on this machine, or None."""
    return next((f for f in CJK_FONTS if Path(f).is_file()), None)


def save_text_image(path: Path, lines: list[str], **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text_image(lines, **kwargs).save(path)
    return path
