"""Text in images (OCR) over rapidocr-onnxruntime: a cheap first pass that says whether an image likely holds
text, and the full pass that reads it. Runs inside decode workers (no torch).

A placeholder until the OCR engine lands: the interface is the one the pipeline codes against (OCR_SIDE,
TextLine, PageText, OcrReader.likely/read)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .. import extras

OCR_SIDE = 1280  # the long side (px) the full pass reads at


@dataclass(frozen=True)
class TextLine:
    text: str
    box: tuple[tuple[float, float], ...]  # 4 corners, fractions of the oriented image's width and height
    score: float


@dataclass(frozen=True)
class PageText:
    lines: tuple[TextLine, ...]

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def to_json(self) -> list[dict]:
        return [{"text": ln.text, "box": [list(p) for p in ln.box], "score": ln.score} for ln in self.lines]

    @classmethod
    def from_json(cls, rows: list) -> PageText:
        return cls(tuple(TextLine(str(r["text"]), tuple((float(x), float(y)) for x, y in r["box"]),
                                  float(r["score"])) for r in rows))


class OcrReader:
    def __init__(self, threads: int = 1):
        extras.require("reading text in images", extras.OCR)
        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)

    def likely(self, image: Image.Image) -> bool:
        """Crude placeholder: any image with enough contrast passes."""
        grey = np.asarray(image.convert("L"), dtype=np.float32)
        return grey.size > 0 and float(grey.std()) > 8.0

    def read(self, image: Image.Image) -> PageText:
        rgb = image.convert("RGB")
        w, h = rgb.size
        result, _ = self._engine(np.asarray(rgb)[:, :, ::-1])
        lines = []
        for box, text, score in result or ():
            if str(text).strip():
                lines.append(TextLine(str(text), tuple((float(x) / w, float(y) / h) for x, y in box), float(score)))
        return PageText(tuple(lines))
