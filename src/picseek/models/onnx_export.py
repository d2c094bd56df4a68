"""Export a Hugging Face dual encoder's towers to ONNX in a child process (`python -m picseek.models.onnx_export`),
and quantize a ready ONNX image tower in one (`--quantize SOURCE TARGET`, models/onnx_repo.py).

The export needs the torch weights, the tracer's copy of the graph, and then the quantizer's; done in the indexing
process, all of that would stay in its peak memory. A child process does it once per model (text tower fp32, then
the vision tower, freeing the torch weights before quantizing), writes everything atomically into the cache, and
exits; the parent then runs the cached towers without ever loading torch. Exit status: 0 done, 3 the model does not
export (SigLIP 2 NaFlex), 1 anything else (the last stderr line says why).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys

from ..errors import ModelError

log = logging.getLogger(__name__)
NOT_EXPORTABLE = 3


def export_in_child(source: str, precision: str) -> bool:
    """Export `source` (a model folder or repo id) for `precision` in a child process. True when done, False when
    the model does not export; ModelError when the export failed."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    proc = subprocess.run([sys.executable, "-m", "picseek.models.onnx_export", source, precision],
                          capture_output=True, text=True, env=env)
    if proc.returncode == 0:
        return True
    if proc.returncode == NOT_EXPORTABLE:
        return False
    lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
    raise ModelError(f"cannot export {source} to ONNX: {lines[-1] if lines else f'exit status {proc.returncode}'}")


def quantize_in_child(source, target) -> None:
    """onnx.quantize_cached in a child process: ONNX Runtime's quantizer holds about three copies of the graph's
    weights at its peak (1.1 GB for a ViT-B/32 image tower), which the indexing process would keep as its own peak
    (and often as heap it does not give back) for the rest of its run. ModelError when it failed."""
    from . import onnx

    external = ["--external"] if onnx.writes_external(source) else []
    proc = subprocess.run([sys.executable, "-m", "picseek.models.onnx_export", "--quantize", str(source),
                           str(target), *external], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
        raise ModelError(lines[-1] if lines else f"the quantizer exited with status {proc.returncode}")


def export(source: str, precision: str) -> int:
    from . import onnx
    from .hf import load
    from .registry import ModelSpec

    emb = load(ModelSpec(source, "hf", source), precision="fp32")
    if emb.patch_size is not None:
        return NOT_EXPORTABLE
    folder = onnx.cache_folder(emb.model_id)
    text = folder / "text-fp32.onnx"
    if not text.is_file():
        onnx._export_text(emb, text)
    vision = folder / f"vision-{precision}.onnx"
    if not vision.is_file():
        import torch

        s = emb.image_spec.size
        facts_saved = []

        def release() -> None:  # the light facts need the tokenizer only; then the weights can go
            onnx._save_light(emb, folder)
            facts_saved.append(True)
            emb.model = None

        onnx._export(onnx._vision_module(emb.model), (torch.zeros(1, 3, s, s),), ["pixel_values"],
                     {"pixel_values": {0: "batch"}}, vision, precision == "int8", release=release)
        if facts_saved:
            return 0
    onnx._save_light(emb, folder)
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        if argv[0] == "--quantize":
            from pathlib import Path

            from . import onnx

            onnx.quantize_cached(Path(argv[1]), Path(argv[2]), external="--external" in argv[3:])
            return 0
        source, precision = argv
        return export(source, precision)
    except Exception as exc:  # noqa: BLE001 - the parent reads the last line
        print(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
