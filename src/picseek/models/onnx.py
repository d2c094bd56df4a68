"""Fast inference paths for Hugging Face dual encoders: ONNX Runtime (fp32 or dynamic int8) and torch bf16 weights.

`precision` names what runs the towers:
  fp32  the reference: the torch model as loaded.
  int8  ONNX Runtime with dynamic int8 quantization of the MatMul/Gemm weights (activations quantized per batch).
  bf16  torch with bfloat16 weights; fast only where the CPU computes in bf16 (AVX-512 BF16 / AMX); elsewhere slow.
  auto  int8 where onnxruntime is installed and the model exports, else fp32.

The ONNX files are exported once per model and precision and cached under `<cache_dir>/onnx/<key>/` (the key hashes
the model id, the precision, and the onnx/onnxruntime versions), written atomically so two processes never see a
half-written file. The exported graph includes the final L2 normalisation. benchmarks/index_speed.py prints the
cosine between the fast and the reference vectors; the unit tests check it on tiny models.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import config
from ..errors import ModelError, UsageError, one_line

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "int8")
OPSET = 17
Runner = Callable[..., np.ndarray]


def check_precision(value: str | None) -> str:
    value = (value or "auto").lower()
    if value not in PRECISIONS:
        raise UsageError(f"unknown precision {value!r}: use one of {', '.join(PRECISIONS)}")
    return value


def cpu_has_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (x86 AVX-512 BF16 or AMX; Arm BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags for flag in (" avx512_bf16", " amx_bf16", " bf16"))


def onnxruntime_available() -> bool:
    """Both installed (checked without importing them: `import onnx` alone costs about a second)."""
    from importlib.util import find_spec

    return find_spec("onnx") is not None and find_spec("onnxruntime") is not None


def resolve_precision(value: str | None, can_export: bool = True) -> str:
    """`auto` and impossible requests -> what will actually run."""
    value = check_precision(value)
    if value == "auto":
        return "int8" if can_export and onnxruntime_available() else "fp32"
    if value == "int8":
        if not onnxruntime_available():
            raise ModelError("precision int8 needs onnxruntime and onnx: pip install onnxruntime onnx")
        if not can_export:
            raise ModelError("precision int8 is not available for this model (its vision tower does not export "
                             "to ONNX); use --precision fp32")
    if value == "bf16" and not cpu_has_bf16():
        log.warning("precision bf16: this CPU has no native bfloat16 arithmetic, so bf16 is slower than fp32 here")
    return value


def cache_folder(model_id: str) -> Path:
    """Where a model's exported towers live: vision-<precision>.onnx, text-fp32.onnx, and what a process needs to
    run them without torch or transformers (embedder.json, tokenizer.json)."""
    from importlib.metadata import version

    key = f"{model_id}|onnx{version('onnx')}|ort{version('onnxruntime')}|opset{OPSET}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return config.cache_dir() / "onnx" / digest


def exported(model_id: str, precision: str) -> bool:
    """True where everything to run a model at `precision` without its torch weights is cached."""
    if not onnxruntime_available():
        return False
    folder = cache_folder(model_id)
    return all((folder / name).is_file() for name in (f"vision-{precision}.onnx", "text-fp32.onnx", EMBEDDER_JSON,
                                                       TOKENIZER_JSON))


_threads: int | None = None  # set_default_threads


def set_default_threads(threads: int | None) -> None:
    """The intra-op threads of every ONNX Runtime session made from now on in this process (None: every CPU it may
    use). Spark tasks set `spark.task.cpus`: an executor runs a task per core, and a session per task on every core
    of the machine would oversubscribe them."""
    global _threads
    _threads = max(1, int(threads)) if threads else None


def default_threads() -> int:
    if _threads:
        return _threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OrtTower:
    """One exported tower in an ONNX Runtime session. Call with numpy inputs by name -> float32 unit rows."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        # no busy-waiting between batches: the decode workers need those cycles
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, **feeds: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[0]
        return np.asarray(out, dtype=np.float32)


class LazyTower:
    """An OrtTower built on first use: a session costs ~0.5 s and its weights' memory (the text tower of a CLIP
    ViT-B/32 holds 250 MB), and an index run never needs the text tower, a text query never the vision tower."""

    def __init__(self, path: Path, threads: int | None = None):
        self.path, self.threads = path, threads
        self._tower: OrtTower | None = None
        self._lock = threading.Lock()

    def load(self) -> OrtTower:
        with self._lock:
            if self._tower is None:
                self._tower = OrtTower(self.path, self.threads)
            return self._tower

    def __call__(self, **feeds: np.ndarray) -> np.ndarray:
        return self.load()(**feeds)


def _vision_module(model):
    import torch

    class Vision(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            out = self.m.get_image_features(pixel_values=pixel_values)
            out = out if isinstance(out, torch.Tensor) else out.pooler_output
            return torch.nn.functional.normalize(out, dim=-1)

    return Vision(model).eval()


def _text_module(model, with_mask: bool):
    import torch

    class Text(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask=None):
            kw = {"input_ids": input_ids}
            if with_mask:
                kw["attention_mask"] = attention_mask
            out = self.m.get_text_features(**kw)
            out = out if isinstance(out, torch.Tensor) else out.pooler_output
            return torch.nn.functional.normalize(out, dim=-1)

    return Text(model).eval()


def _export(module, args: tuple, names: list[str], dynamic: dict, target: Path, quantize: bool,
            release: Callable[[], None] | None = None) -> None:
    """Export to a temporary file beside `target`, quantize if asked, then rename into place (atomic). `release`
    is called between the two (to free the torch weights before the quantizer loads the graph)."""
    import gc

    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        raw = Path(tmp) / "fp32.onnx"
        final = raw
        with torch.inference_mode(), _quiet_export():
            torch.onnx.export(module, args, str(raw), input_names=names, output_names=["embedding"],
                              dynamic_axes={**dynamic, "embedding": {0: "batch"}}, opset_version=OPSET,
                              dynamo=False, external_data=False)
            if release is not None:
                del module
                release()
                gc.collect()
            if quantize:
                final = Path(tmp) / "int8.onnx"
                _quantize(raw, final)
        os.replace(final, target)


def _quantize(source: Path, out: Path, external: bool = False) -> None:
    """Dynamic int8: MatMul/Gemm weights stored as int8, activations quantized per batch at run time. `external`
    writes the weights to a side file (`<out>.data`), for graphs near protobuf's 2 GB limit."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                     use_external_data_format=external)


EXTERNAL_ABOVE = 1_500_000_000  # bytes of weights past which a quantized graph keeps them in a side file


def _graph_files(source: Path) -> list[Path]:
    """The graph and what lies beside it (its weights, configs), without other accelerators' copies."""
    return [f for f in source.parent.iterdir() if f.is_file() and f.suffix not in (".armnn", ".rknn")]


def writes_external(source: Path) -> bool:
    """Whether the int8 copy of `source` keeps its weights in a side file (graphs near protobuf's 2 GB limit)."""
    return sum(f.stat().st_size for f in _graph_files(source)) > EXTERNAL_ABOVE


def quantize_cached(source: Path, target: Path, external: bool | None = None) -> None:
    """Quantize a ready ONNX graph (models/onnx_repo.py) into the cache, atomically as `_export` writes: into a
    temporary folder beside `target`, then renamed into place, a side file of weights first and the graph last (its
    presence means complete). No torch: the quantizer reads and writes ONNX only. `external`: None asks
    `writes_external`. models/onnx_export.py runs this in a child process."""
    target.parent.mkdir(parents=True, exist_ok=True)
    files = _graph_files(source)
    external = writes_external(source) if external is None else external
    weights = [f for f in files if f.name != source.name and f.suffix not in (".json", ".txt", ".md")]
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp, _quiet_export():
        if any(f.is_symlink() for f in weights):  # weight files beside the graph, as links (the hub cache)
            source = _copied(source, [source, *weights], Path(tmp) / "source")
        elif not weights:  # the quantizer writes a scratch copy beside its input: here, not in the model's folder
            (Path(tmp) / "source").mkdir()
            os.symlink(source.resolve(), Path(tmp) / "source" / source.name)
            source = Path(tmp) / "source" / source.name
        out = Path(tmp) / target.name
        _quantize(source, out, external=external)
        for side in Path(tmp).iterdir():
            if side != out and side.is_file():
                os.replace(side, target.parent / side.name)
        os.replace(out, target)


def _copied(source: Path, files: list[Path], folder: Path) -> Path:
    """The graph and its weight files copied into `folder`: the Hugging Face cache holds symbolic links to its blobs,
    and onnx refuses to read external weights through a symbolic link (or a hard link)."""
    import shutil

    folder.mkdir()
    for f in files:
        shutil.copyfile(f, folder / f.name)
    return folder / source.name


class _quiet_export:
    """torch.onnx and the quantizer warn loudly about things that do not matter here (tracing asserts, pre-processing
    advice); keep them out of the user's terminal, in the debug log."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")
        self._root = logging.getLogger()
        self._level = self._root.level
        self._root.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self._root.setLevel(self._level)
        self._w.__exit__(*exc)


def ort_towers(emb, precision: str, threads: int | None = None) -> tuple[Runner, Runner | None]:
    """(image runner, text runner or None) for an HFEmbedder, exporting from its torch model what is not cached."""
    folder = cache_folder(emb.model_id)
    vision = folder / f"vision-{precision}.onnx"
    if not vision.is_file():
        if emb.model is None:
            raise ModelError(f"the ONNX vision tower of {emb.name} is missing from {folder}")
        log.info("exporting %s's vision tower to ONNX (%s, once; cached in %s)", emb.name, precision, folder)
        import torch

        s = emb.image_spec.size
        try:
            _export(_vision_module(emb.model), (torch.zeros(1, 3, s, s),), ["pixel_values"],
                    {"pixel_values": {0: "batch"}}, vision, precision == "int8")
        except Exception as exc:  # noqa: BLE001 - an exporter failure means: run the reference path
            raise ModelError(f"cannot export {emb.name} to ONNX: {one_line(exc)}") from exc
    image = LazyTower(vision, threads)
    # The text tower runs in fp32: dynamic int8 quantizes activations per batch, so a query's vector would depend
    # on its batch-mates and padding; a single query in fp32 ONNX Runtime on one thread is fast and exact.
    text = None
    text_path = folder / "text-fp32.onnx"
    try:
        if not text_path.is_file():
            _export_text(emb, text_path)
        text = LazyTower(text_path, 1)  # one query at a time: one thread answers fastest
    except Exception as exc:  # noqa: BLE001 - the text tower then stays on torch
        log.info("text tower of %s stays on torch: %s", emb.name, exc)
    if emb.model is not None and text is not None and not (folder / EMBEDDER_JSON).is_file():
        _save_light(emb, folder)
    return image, text


def _text_names(emb) -> list[str]:
    sample = emb.tokenizer(["a photo"], padding=emb.padding, truncation=True, max_length=emb.max_length)
    with_mask = "attention_mask" in emb.text_inputs and "attention_mask" in sample
    return ["input_ids", "attention_mask"] if with_mask else ["input_ids"]


def _export_text(emb, target: Path) -> None:
    import torch

    names = _text_names(emb)
    ids = torch.ones((2, 7), dtype=torch.long)
    args = (ids, torch.ones_like(ids)) if len(names) == 2 else (ids,)
    dyn = {n: {0: "batch", 1: "tokens"} for n in names}
    _export(_text_module(emb.model, len(names) == 2), args, names, dyn, target, quantize=False)


# -- running without torch and transformers ---------------------------------------------------------------------
EMBEDDER_JSON = "embedder.json"
TOKENIZER_JSON = "tokenizer.json"


def _save_light(emb, folder: Path) -> None:
    """What `light_embedder` needs: the embedder's facts and the fast tokenizer (slow tokenizers: not saved, so
    such a model keeps loading through transformers)."""
    backend = getattr(emb.tokenizer, "backend_tokenizer", None)
    if backend is None:
        return
    spec = emb.image_spec
    facts = {"model_id": emb.model_id, "dim": emb.dim, "padding": emb.padding, "max_length": emb.max_length,
             "text_inputs": _text_names(emb), "pad_token": emb.tokenizer.pad_token,
             "pad_id": emb.tokenizer.pad_token_id,
             "image_spec": {"size": spec.size, "resize": spec.resize, "resample": spec.resample,
                            "mean": list(spec.mean), "std": list(spec.std)}}
    with tempfile.TemporaryDirectory(dir=folder, prefix=".light-") as tmp:
        backend.save(str(Path(tmp) / TOKENIZER_JSON))
        (Path(tmp) / EMBEDDER_JSON).write_text(json.dumps(facts, indent=1))
        os.replace(Path(tmp) / TOKENIZER_JSON, folder / TOKENIZER_JSON)
        os.replace(Path(tmp) / EMBEDDER_JSON, folder / EMBEDDER_JSON)  # last: its presence means complete


class FastTokenizer:
    """The `tokenizers` library behind a transformers-style call: texts -> {"input_ids", "attention_mask"} arrays,
    padded and truncated as the transformers tokenizer does."""

    def __init__(self, path: Path, pad_token: str | None, pad_id: int | None):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(path))
        self.tok.no_padding()
        self.tok.no_truncation()
        self.pad_token, self.pad_id = pad_token, pad_id or 0

    def __call__(self, texts, padding: str = "longest", truncation: bool = True, max_length: int = 77,
                 return_tensors: str = "np") -> dict[str, np.ndarray]:
        if truncation:
            self.tok.enable_truncation(max_length)
        length = max_length if padding == "max_length" else None
        self.tok.enable_padding(pad_id=self.pad_id, pad_token=self.pad_token or "[PAD]", length=length)
        enc = self.tok.encode_batch(list(texts))
        return {"input_ids": np.asarray([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.asarray([e.attention_mask for e in enc], dtype=np.int64)}


def light_embedder(name: str, model_id: str, precision: str, auto: bool):
    """An HFEmbedder that runs cached ONNX towers only: no torch, no transformers, no weights in memory."""
    from .base import MAIN, ImageSpec
    from .hf import HFEmbedder

    folder = cache_folder(model_id)
    facts = json.loads((folder / EMBEDDER_JSON).read_text())
    sp = facts["image_spec"]
    spec = ImageSpec(sp["size"], sp["resize"], sp["resample"], tuple(sp["mean"]), tuple(sp["std"]))
    tokenizer = FastTokenizer(folder / TOKENIZER_JSON, facts.get("pad_token"), facts.get("pad_id"))
    dim = int(facts["dim"])
    return HFEmbedder(name=name, model_id=model_id, dim=dim, image_spec=spec, spaces={MAIN: dim},
                      image_query_space=MAIN, model=None, tokenizer=tokenizer, padding=facts["padding"],
                      max_length=int(facts["max_length"]), text_inputs=tuple(facts["text_inputs"]),
                      precision=precision, precision_auto=auto)


def to_bf16(emb) -> None:
    import torch

    emb.model.to(torch.bfloat16)
    emb.compute_dtype = "bfloat16"
