"""Text inside images: a cheap first pass that says whether an image likely shows text, and the full reading.

`OcrReader.likely` looks at the small image the model pipeline already decoded (a JPEG's 1/8 draft, ~500 px) with a
few OpenCV operations and no neural network: text is rows of small, high-contrast marks of one height. Dark-on-light
and light-on-dark marks are found by morphology (black-hat, top-hat), grouped with a horizontal closing, and a group
counts as a line when its marks' centres lie on one near-horizontal line and their heights are alike. A photo without
text pays ~2-4 ms of one core (benchmarks/ocr.py measures it, and what it misses: text that is under ~4 px high in
the small image); only images that pass are decoded at `OCR_SIDE` and read.

`OcrReader.read` runs PP-OCR (detection, angle classification, recognition; the ONNX models shipped in the
rapidocr-onnxruntime wheel, so it works offline) in ONNX Runtime sessions made the way models/onnx.py makes them: the
asked-for intra-op threads, one inter-op thread, no busy-waiting. Its recognition model often runs the words of
smaller English text together; `spaced` puts the spaces back where English word frequencies say. Boxes come back as
fractions of the oriented image, so they fit any size it is shown at. The recognition model reads Chinese and English;
other scripts give what it makes of them (often nothing), never an error.
"""
from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ImageError
from ..extras import OCR, require
from ..models.onnx import default_threads

OCR_SIDE = 1600  # long side the full pass reads at: text 16 px high in a 1600 px image is read (benchmarks/ocr.py)
MIN_SCORE = 0.5  # recognition confidence below which a line is dropped
MIN_LINE_HEIGHT = 8  # px at OCR_SIDE: a smaller box is noise, not a line


@dataclass(frozen=True)
class TextLine:
    text: str
    box: tuple[tuple[float, float], ...]  # 4 corners (x, y), fractions of the oriented image's width and height
    score: float  # recognition confidence 0..1

    def to_json(self) -> dict:
        return {"text": self.text, "box": [[round(x, 4), round(y, 4)] for x, y in self.box],
                "score": round(self.score, 3)}

    @classmethod
    def from_json(cls, row: dict) -> TextLine:
        box = tuple((float(x), float(y)) for x, y in row["box"])
        if len(box) != 4:
            raise ValueError(f"a text line's box has 4 corners, not {len(box)}")
        return cls(str(row["text"]), box, float(row.get("score", 0.0)))


@dataclass(frozen=True)
class PageText:
    lines: tuple[TextLine, ...] = ()

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def to_json(self) -> list[dict]:
        """[{"text", "box", "score"}] (box corners rounded to 1/10000 of a side, score to 1/1000)."""
        return [line.to_json() for line in self.lines]

    @classmethod
    def from_json(cls, rows: list[dict] | None) -> PageText:
        """The inverse of `to_json`; ValueError (with what is wrong) for rows that are not such lines."""
        if rows is None:
            return cls()
        if not isinstance(rows, list):
            raise ValueError("stored text is a list of lines")
        try:
            return cls(tuple(TextLine.from_json(row) for row in rows))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a stored text line is not {{text, box, score}}: {exc}") from None


class OcrReader:
    """PP-OCR through rapidocr-onnxruntime, loaded on first `read` (the first pass needs only OpenCV).

    One reader per process or thread: the sessions are shared by calls, which a lock serialises."""

    def __init__(self, threads: int = 1):
        require("reading text in images", OCR)
        self.threads = max(1, int(threads or default_threads()))
        self._engine: Any = None
        self._lock = threading.Lock()

    # -- the first pass --------------------------------------------------------------------------------------------

    def likely(self, image: Image.Image) -> bool:
        """Whether the image likely shows text worth reading (cheap: no network, a few ms at ~500 px)."""
        found = gate_lines(image)
        lines = [n for n in found if n >= GATE_MIN_MARKS]
        return (len(lines) >= GATE_MIN_LINES or any(n >= GATE_LONG_LINE for n in lines)
                or sum(n >= GATE_SHORT_MARKS for n in found) >= GATE_SHORT_LINES)

    # -- the full pass ---------------------------------------------------------------------------------------------

    def read(self, image: Image.Image) -> PageText:
        """Detect, orient and recognise the lines of `image` (best about OCR_SIDE on its long side; a bigger one is
        read at OCR_SIDE). An image too small or without text gives no lines; one the engine fails on raises an
        ImageError with a one-line reason (indexing records it and goes on)."""
        rgb = _rgb(image)
        width, height = rgb.size
        if width < 8 or height < 8:
            return PageText()
        scale = min(1.0, OCR_SIDE / max(width, height))
        if scale < 1.0:
            rgb = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)
        bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
        engine = self._load()
        try:
            with self._lock:
                result, _ = engine(bgr)
        except Exception as exc:  # noqa: BLE001 - onnxruntime, OpenCV, shapely: any of them, one line
            reason = (str(exc).strip().splitlines() or [""])[-1][:200]
            raise ImageError(f"cannot read the text in this image: {type(exc).__name__}: {reason}") from exc
        if not result:
            return PageText()
        w, h = bgr.shape[1], bgr.shape[0]
        lines = []
        for box, text, score in result:
            text = spaced(str(text))
            if not text or float(score) < MIN_SCORE:
                continue
            corners = np.asarray(box, dtype=np.float64).reshape(4, 2)
            if _side_lengths(corners)[1] < MIN_LINE_HEIGHT * min(1.0, max(w, h) / OCR_SIDE):
                continue
            frac = tuple((float(np.clip(x / w, 0, 1)), float(np.clip(y / h, 0, 1))) for x, y in corners)
            lines.append(TextLine(text, frac, float(score)))
        return PageText(tuple(lines))

    def _load(self) -> Any:
        with self._lock:
            if self._engine is None:
                self._engine = _make_engine(self.threads)
            return self._engine


# -- the first pass: rows of small, high-contrast marks ------------------------------------------------------------

GATE_SIDE = 400  # the first pass works at most this big (a 12 MP photo's 1/8 draft, 500 x 375, is scaled down)
GATE_CONTRAST = 32  # grey levels a mark stands out from its surround (black-hat / top-hat response)
GATE_MIN_MARKS = 6  # marks a line needs to count
GATE_MIN_LINES = 2  # lines that say "likely"; or one line of
GATE_LONG_LINE = 8  # this many marks (tuned on a rendered set other than benchmarks/ocr.py's)
GATE_SHORT_LINES, GATE_SHORT_MARKS = 3, 5  # or this many lines of this many marks: a receipt's short words in caps
# (measured on 96 rendered text images of two seeds and 47 photos without text: text 94/96 as before, photos 2/47
# instead of 1/47, and two-line documents of short words, which the rules above missed, now pass)
_MARK_KERNEL = np.ones((7, 7), np.uint8)  # marks up to ~6 px thick: letters, not the objects of a photo
_JOIN_KERNEL = np.ones((1, 5), np.uint8)  # joins the letters of a word and the words of a line


def gate_lines(image: Image.Image) -> list[int]:
    """The text-line-shaped groups of marks in the small image, each as its number of marks (letters, or words where
    the letters merge at this size). Marks are what stands out from its surround by GATE_CONTRAST grey levels,
    darker (black-hat) or lighter (top-hat), at most ~6 px thick; marks a horizontal closing joins form a group. A
    group counts when its letter-sized marks (3 or more) have centres on one line within 20 degrees of horizontal
    and heights alike, and it is wider than twice its height. Cheap: ~2-4 ms at 500 x 375."""
    import cv2

    factor = max(image.size) // (2 * GATE_SIDE)
    if factor >= 2:  # a big image (not what indexing hands over): box-averaged down first, cheaply
        image = image.reduce(factor)
    gray = np.asarray(image.convert("L"))
    h, w = gray.shape
    if min(h, w) < 16:
        return []
    scale = min(1.0, GATE_SIDE / max(h, w))
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        h = gray.shape[0]
    lines: list[int] = []
    for op in (cv2.MORPH_BLACKHAT, cv2.MORPH_TOPHAT):  # dark marks on light, light marks on dark
        binary = (cv2.morphologyEx(gray, op, _MARK_KERNEL) >= GATE_CONTRAST).astype(np.uint8)
        lines += _lines(cv2, binary, h)
    return lines


def _lines(cv2: Any, binary: np.ndarray, h: int) -> list[int]:
    n_marks, mark_labels = cv2.connectedComponents(binary, connectivity=8)
    if n_marks <= 3:
        return []
    count, labels = cv2.connectedComponents(cv2.morphologyEx(binary, cv2.MORPH_CLOSE, _JOIN_KERNEL), connectivity=8)
    points = cv2.findNonZero(binary)  # (20 times faster than numpy's nonzero here)
    points = points.reshape(-1, 2).astype(np.int64)  # (N, 1, 2) in OpenCV 4, (N, 2) in 5
    xs, ys = points[:, 0], points[:, 1]
    mark, group_of_pixel = mark_labels[ys, xs], labels[ys, xs]
    # each mark's box (numpy over the marks' pixels: cheaper than OpenCV's statistics on a noisy photo)
    top, left = np.full(n_marks, 1 << 30), np.full(n_marks, 1 << 30)
    bottom, right = np.zeros(n_marks, np.int64), np.zeros(n_marks, np.int64)
    np.minimum.at(top, mark, ys)
    np.maximum.at(bottom, mark, ys + 1)
    np.minimum.at(left, mark, xs)
    np.maximum.at(right, mark, xs + 1)
    area = np.bincount(mark, minlength=n_marks)
    group_of = np.zeros(n_marks, np.int64)
    group_of[mark] = group_of_pixel  # each mark lies wholly inside one group (joining only adds pixels)
    mh = (bottom - top).astype(np.float64)
    letters = (mh >= 2) & (mh <= h // 5) & (area >= 3)
    letters[0] = False
    group, mh = group_of[letters], mh[letters]
    left, top, right, bottom = left[letters], top[letters], right[letters], bottom[letters]
    x, y = (left + right) / 2, (top + bottom) / 2
    n = np.bincount(group, minlength=count).astype(np.float64)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=values, minlength=count) / np.maximum(n, 1)

    mx, my, mean_h = mean(x), mean(y), mean(mh)
    vx, cxy, vy = mean(x * x) - mx ** 2, mean(x * y) - mx * my, mean(y * y) - my ** 2
    slope = cxy / np.maximum(vx, 1e-6)
    residual = np.sqrt(np.maximum(vy - slope * cxy, 0))  # spread of the marks' centres about their line
    spread_h = np.sqrt(np.maximum(mean(mh * mh) - mean_h ** 2, 0))
    x0, y0 = np.full(count, 1 << 30), np.full(count, 1 << 30)
    x1, y1 = np.zeros(count, np.int64), np.zeros(count, np.int64)
    np.minimum.at(x0, group, left)
    np.minimum.at(y0, group, top)
    np.maximum.at(x1, group, right)
    np.maximum.at(y1, group, bottom)
    gw, gh = x1 - x0, y1 - y0
    line = ((n >= 3) & (np.abs(slope) <= 0.36) & (residual <= 0.25 * mean_h + 0.5) & (spread_h <= 0.4 * mean_h)
            & (gw >= 10) & (gw >= 2 * gh))
    line[0] = False
    return [int(k) for k in n[line]]


# -- the engine -----------------------------------------------------------------------------------------------------

_BUILD_LOCK = threading.Lock()


def _make_engine(threads: int) -> Any:
    """rapidocr's RapidOCR, configured: detection on at most OCR_SIDE (never upscaled), lines below the recognition
    score dropped, the 180-degree classifier on; sessions made with picseek's options (`_session_options`)."""
    from rapidocr_onnxruntime import RapidOCR
    from rapidocr_onnxruntime.utils import OrtInferSession

    with _BUILD_LOCK, _session_options(OrtInferSession, threads):
        return RapidOCR(
            text_score=MIN_SCORE, use_cls=True, max_side_len=OCR_SIDE, min_side_len=32,
            intra_op_num_threads=threads, inter_op_num_threads=1,
            det_limit_type="max", det_limit_side_len=OCR_SIDE, det_box_thresh=0.5, det_unclip_ratio=1.6,
            rec_batch_num=8)


@contextlib.contextmanager
def _session_options(session_class: Any, threads: int) -> Iterator[None]:
    """rapidocr builds its ONNX Runtime sessions with default options (threads through its config, spinning on): for
    the time it builds them, make them as models/onnx.py makes every session (no busy-waiting between runs: the decode
    workers need those cycles)."""
    original = session_class.__dict__["_init_sess_opts"]

    def options(config: dict) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.enable_cpu_mem_arena = False
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    session_class._init_sess_opts = staticmethod(options)
    try:
        yield
    finally:
        session_class._init_sess_opts = original


# a run of ASCII letters, with no other letter either side, long enough to hold words the model ran together
_GLUED = re.compile(r"(?<![^\W\d_])[A-Za-z]{6,}(?![^\W\d_])")


WORD_PENALTY = 1.5  # cost added per word of a cut: fewer, longer words ("Invoice number", not "In voice number")


def split_words(run: str) -> list[str]:
    """The cheapest cut of a run of letters into words: wordninja's word costs (Zipf's law over its Wikipedia
    unigram list, what wordninja.split minimises) plus WORD_PENALTY per word. Measured on 348 runs of 2-3 words
    glued from benchmarks/ocr.py's sentences: 346 cut right with a penalty of 1 to 3, 342 without (wordninja's own)."""
    import math

    import wordninja

    model = wordninja.DEFAULT_LANGUAGE_MODEL
    costs, longest = model._wordcost, model._maxword  # (its word list and costs; wordninja has no public handle)
    low, n = run.lower(), len(run)
    best, back = [0.0] + [math.inf] * n, [0] * (n + 1)
    for i in range(1, n + 1):
        for k in range(max(0, i - longest), i):
            cost = best[k] + costs.get(low[k:i], math.inf) + WORD_PENALTY
            if cost < best[i]:
                best[i], back[i] = cost, k
    if best[n] == math.inf:
        return [run]
    parts, i = [], n
    while i > 0:
        parts.append(run[back[i]:i])
        i = back[i]
    return parts[::-1]


def spaced(text: str) -> str:
    """The line with its words apart. PP-OCR's recognition model (Chinese + English) often drops the spaces of
    smaller English text ("Noparkingbetweeneightandsix"); a run of ASCII letters that is not itself a word is cut
    where English word frequencies say (`split_words`), keeping the letters and their case. All-capital runs and
    runs the cut would leave in single letters (names, codes) stay as they are."""

    def cut(match: re.Match) -> str:
        run = match.group()
        if run.isupper():
            return run
        parts = split_words(run)
        if len(parts) < 2 or any(len(p) == 1 and p not in "aAI" for p in parts) or "".join(parts) != run:
            return run
        return " ".join(parts)

    return " ".join(_GLUED.sub(cut, " ".join(text.split())).split())


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))  # transparent = paper
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _side_lengths(corners: np.ndarray) -> tuple[float, float]:
    """(width, height) of a 4-corner box in reading order (top-left, top-right, bottom-right, bottom-left)."""
    width = (np.linalg.norm(corners[1] - corners[0]) + np.linalg.norm(corners[2] - corners[3])) / 2
    height = (np.linalg.norm(corners[3] - corners[0]) + np.linalg.norm(corners[2] - corners[1])) / 2
    return float(width), float(height)
