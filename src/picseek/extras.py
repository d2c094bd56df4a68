"""Optional parts of picseek, and the one message that names the extra a feature needs when it is missing.

torch and transformers are needed only to convert a Hugging Face model (`hf:`, a model folder, the `-hf` names), for
BLIP re-ranking, for training, and for bf16; indexing and search with the built-in model or a ready-ONNX model (the
CLIP short names) never import them (docs/models.md). Reading text in images (OCR) needs rapidocr-onnxruntime (the `ocr`
extra), which brings OpenCV. The `openvino` runtime needs openvino and nncf (the `openvino` extra)."""
from __future__ import annotations

from importlib.util import find_spec

from .errors import MissingExtraError

TORCH = ("torch", ("torch", "transformers"))  # the extra, and the modules it brings
OCR = ("ocr", ("rapidocr_onnxruntime", "cv2", "wordninja"))  # reading text in images (ingest/ocr.py)
PARQUET = ("parquet", ("pyarrow",))
OPENVINO = ("openvino", ("openvino", "nncf"))  # the openvino runtime of int8 image towers (models/openvino_tower.py)


def require(feature: str, extra: tuple[str, tuple[str, ...]] = TORCH) -> None:
    """A one-line MissingExtraError when a module `feature` needs is not installed (checked without importing it)."""
    name, modules = extra
    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        how = f"pip install 'picseek[{name}]'"
        if name == TORCH[0]:
            how += f" (or bash scripts/install.sh --extras {name}, which takes the CPU build of torch)"
        raise MissingExtraError(f"{feature} needs {' and '.join(missing)}: {how}")
