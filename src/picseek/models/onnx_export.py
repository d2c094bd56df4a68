"""The program the export and quantize children run (models/onnx.py `export_in_child`, `quantize_in_child`):
`python -m picseek.models.onnx_export SOURCE PRECISION` exports a Hugging Face dual encoder's towers to ONNX (through
models/hf.py), `--image SOURCE PRECISION` an image model's one tower (models/dinov2.py), `--quantize SOURCE TARGET
[--fp16]` quantizes a ready ONNX image tower to int8 (or converts it to fp16 for a GPU) (models/onnx_repo.py).

The export needs the torch weights, the tracer's copy of the graph, and then the quantizer's; done in the indexing
process, all of that would stay in its peak memory. A child process does it once per model (text tower fp32, then
the vision tower, freeing the torch weights before quantizing), writes everything atomically into the cache, and
exits; the parent then runs the cached towers without ever loading torch. Exit status: 0 done, 3 the model does not
export (SigLIP 2 NaFlex), 1 anything else (the last stderr line says why). Nothing imports this module.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from . import dinov2, hf, onnx
from .base import ModelSpec

log = logging.getLogger(__name__)
NOT_EXPORTABLE = onnx.NOT_EXPORTABLE


def export(source: str, precision: str) -> int:
    emb = hf.load(ModelSpec(source, "hf", source), precision="fp32")
    if emb.patch_size is not None:
        return NOT_EXPORTABLE
    folder = onnx.cache_folder(emb.model_id)
    text = folder / "text-fp32.onnx"
    if not text.is_file():
        hf._export_text(emb, text)
    vision = folder / f"vision-{precision}.onnx"
    if not vision.is_file():
        import torch

        s = emb.image_spec.size
        facts_saved = []

        def release() -> None:  # the light facts need the tokenizer only; then the weights can go
            hf._save_light(emb, folder)
            facts_saved.append(True)
            emb.model = None

        hf._export(hf._vision_module(emb.model), (torch.zeros(1, 3, s, s),), ["pixel_values"],
                   {"pixel_values": {0: "batch"}}, vision, precision == "int8", release=release)
        if facts_saved:
            return 0
    hf._save_light(emb, folder)
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        if argv[0] == "--quantize":
            onnx.quantize_cached(Path(argv[1]), Path(argv[2]), external="--external" in argv[3:],
                                 precision="fp16" if "--fp16" in argv[3:] else "int8")
            return 0
        if argv[0] == "--image":
            return dinov2.export(argv[1], argv[2])
        source, precision = argv
        return export(source, precision)
    except Exception as exc:  # noqa: BLE001 - the parent reads the last line
        print(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
