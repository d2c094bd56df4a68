"""The session layer under every ONNX model backend: precision, ONNX Runtime sessions, int8 quantization, the
child processes that export and quantize, and the cache folder of what they write.

`precision` names what runs the towers:
  fp32  the reference: the torch model as loaded (a ready-ONNX model: its downloaded graphs).
  int8  ONNX Runtime with dynamic int8 quantization of the MatMul/Gemm weights (activations quantized per batch).
  bf16  torch with bfloat16 weights; fast only where the CPU computes in bf16 (AVX-512 BF16 / AMX); elsewhere slow.
  fp16  on a GPU (`device` cuda): ONNX Runtime's CUDA provider running an fp16 copy of the graph (inputs and
        outputs stay float32), or torch with float16 weights for a model that runs in torch.
  auto  on the CPU: int8 where onnxruntime is installed and the model exports, else fp32; on a GPU: fp16.

`device` names where: `cpu` (the default), or `cuda` / `cuda:N` (ONNX Runtime's CUDA provider, which the
onnxruntime-gpu package brings; torch models use torch's CUDA). `providers` is the one translation of a device into
ONNX Runtime providers; asking for a GPU that ONNX Runtime cannot use is an error, never a silent CPU run.

What a backend makes once per model and precision (models/hf.py: a Hugging Face model's towers exported through
torch; models/onnx_repo.py: a ready image tower quantized) lives under `<cache_dir>/onnx/<key>/` (the key hashes the
model id and the onnx/onnxruntime versions), written atomically so two processes never see a half-written file.
Sessions never busy-wait and take `set_default_threads` threads (Spark tasks set one per task). The export and the
quantizer run in a child process (`python -m picseek.models.onnx_export`), so their peak memory never stays in the
indexing process. The backends import this module; it imports none of them.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from .. import config
from ..errors import ModelError, UsageError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "int8", "fp16")
OPSET = 17
NOT_EXPORTABLE = 3  # the export child's exit status for a model that does not export (SigLIP 2 NaFlex)


def check_precision(value: str | None) -> str:
    value = (value or "auto").lower()
    if value not in PRECISIONS:
        raise UsageError(f"unknown precision {value!r}: use one of {', '.join(PRECISIONS)}")
    return value


def check_device(value: str | None) -> str:
    """`cpu`, `cuda` or `cuda:N` (case and spaces forgiven) -> its canonical spelling; anything else: UsageError."""
    value = (value or "cpu").strip().lower()
    kind, sep, index = value.partition(":")
    if kind == "cpu" and not sep or kind == "cuda" and (not sep or index.isdigit()):
        return value
    raise UsageError(f"unknown device {value!r}: use cpu, cuda or cuda:N")


def is_gpu(device: str | None) -> bool:
    return check_device(device).startswith("cuda")


def providers(device: str | None) -> list:
    """ONNX Runtime providers for a device: the CPU's, or CUDA's (on GPU `N` of `cuda:N`) with the CPU's for the
    operators CUDA lacks. A GPU this onnxruntime cannot use is a ModelError that says what to install."""
    device = check_device(device)
    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise ModelError(f"device {device}: this onnxruntime cannot use a GPU (it has {', '.join(available)}); "
                         "install the GPU build in its place: pip uninstall -y onnxruntime && pip install "
                         "onnxruntime-gpu (docs/deployment.md, \"GPU\")")
    index = int(device.partition(":")[2] or 0)
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


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


def resolve_precision(value: str | None, can_export: bool = True, device: str | None = "cpu") -> str:
    """`auto` and impossible requests -> what will actually run on `device`."""
    value = check_precision(value)
    if is_gpu(device):
        if value == "int8":
            raise ModelError("precision int8 runs on the CPU (ONNX Runtime's int8 kernels); on a GPU use fp16 or "
                             "fp32")
        return "fp16" if value == "auto" else value
    if value == "fp16":
        raise ModelError("precision fp16 is for a GPU (--device cuda); on the CPU use auto, int8 or fp32")
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
    """Where what the backends make for a model lives: vision-<precision>.onnx, and for a Hugging Face model also
    text-fp32.onnx and what a process needs to run them without torch or transformers (models/hf.py)."""
    from importlib.metadata import version

    key = f"{model_id}|onnx{version('onnx')}|ort{version('onnxruntime')}|opset{OPSET}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return config.cache_dir() / "onnx" / digest


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

    def __init__(self, path: Path, threads: int | None = None, device: str = "cpu"):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        # no busy-waiting between batches: the decode workers need those cycles
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=providers(device))
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, **feeds: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[0]
        return np.asarray(out, dtype=np.float32)


class LazyTower:
    """An OrtTower built on first use: a session costs ~0.5 s and its weights' memory (the text tower of a CLIP
    ViT-B/32 holds 250 MB), and an index run never needs the text tower, a text query never the vision tower."""

    def __init__(self, path: Path, threads: int | None = None, device: str = "cpu"):
        self.path, self.threads, self.device = path, threads, device
        self._tower: OrtTower | None = None
        self._lock = threading.Lock()

    def load(self) -> OrtTower:
        with self._lock:
            if self._tower is None:
                self._tower = OrtTower(self.path, self.threads, self.device)
            return self._tower

    def __call__(self, **feeds: np.ndarray) -> np.ndarray:
        return self.load()(**feeds)


# -- int8 quantization -------------------------------------------------------------------------------------------


def quantize(source: Path, out: Path, external: bool = False) -> None:
    """Dynamic int8: MatMul/Gemm weights stored as int8, activations quantized per batch at run time. `external`
    writes the weights to a side file (`<out>.data`), for graphs near protobuf's 2 GB limit."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                     use_external_data_format=external)


def to_fp16(source: Path, out: Path, external: bool = False) -> None:
    """fp16 weights and arithmetic for a GPU: ONNX Runtime's converter (onnxruntime.transformers.float16), with the
    graph's inputs and outputs kept float32 (callers feed and read the same arrays) and the operators it keeps in
    fp32 for accuracy left there."""
    import onnx as onnx_lib
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx_lib.load(str(source)), keep_io_types=True)
    onnx_lib.save(model, str(out), save_as_external_data=external)


CONVERTERS = {"int8": quantize, "fp16": to_fp16}  # precision -> what makes that copy of an fp32 graph
EXTERNAL_ABOVE = 1_500_000_000  # bytes of weights past which a quantized graph keeps them in a side file


def _graph_files(source: Path) -> list[Path]:
    """The graph and what lies beside it (its weights, configs), without other accelerators' copies."""
    return [f for f in source.parent.iterdir() if f.is_file() and f.suffix not in (".armnn", ".rknn")]


def writes_external(source: Path) -> bool:
    """Whether the int8 copy of `source` keeps its weights in a side file (graphs near protobuf's 2 GB limit)."""
    return sum(f.stat().st_size for f in _graph_files(source)) > EXTERNAL_ABOVE


def quantize_cached(source: Path, target: Path, external: bool | None = None, precision: str = "int8") -> None:
    """Quantize a ready ONNX graph (models/onnx_repo.py) to int8 (or, `precision` fp16, convert it: CONVERTERS) into
    the cache, atomically as `hf._export` writes: into a temporary folder beside `target`, then renamed into place, a
    side file of weights first and the graph last (its presence means complete). No torch: the quantizer reads and
    writes ONNX only. `external`: None asks
    `writes_external`. `quantize_in_child` runs this in a child process."""
    target.parent.mkdir(parents=True, exist_ok=True)
    files = _graph_files(source)
    external = writes_external(source) if external is None else external
    weights = [f for f in files if f.name != source.name and f.suffix not in (".json", ".txt", ".md")]
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp, quiet_export():
        if any(f.is_symlink() for f in weights):  # weight files beside the graph, as links (the hub cache)
            source = _copied(source, [source, *weights], Path(tmp) / "source")
        elif not weights:  # the quantizer writes a scratch copy beside its input: here, not in the model's folder
            (Path(tmp) / "source").mkdir()
            os.symlink(source.resolve(), Path(tmp) / "source" / source.name)
            source = Path(tmp) / "source" / source.name
        out = Path(tmp) / target.name
        CONVERTERS[precision](source, out, external=external)
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


class quiet_export:
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


# -- the child processes (models/onnx_export.py is the program they run) ----------------------------------------


def export_in_child(source: str, precision: str, image_only: bool = False) -> bool:
    """Export a Hugging Face model's towers (`source`: a model folder or repo id; models/hf.py) for `precision` in a
    child process; `image_only`: an image model's one tower (models/dinov2.py). True when done, False when the model
    does not export; ModelError when the export failed."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    kind = ["--image"] if image_only else []
    proc = subprocess.run([sys.executable, "-m", "picseek.models.onnx_export", *kind, source, precision],
                          capture_output=True, text=True, env=env)
    if proc.returncode == 0:
        return True
    if proc.returncode == NOT_EXPORTABLE:
        return False
    lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
    raise ModelError(f"cannot export {source} to ONNX: {lines[-1] if lines else f'exit status {proc.returncode}'}")


def quantize_in_child(source, target, precision: str = "int8") -> None:
    """`quantize_cached` in a child process: ONNX Runtime's quantizer holds about three copies of the graph's
    weights at its peak (1.1 GB for a ViT-B/32 image tower), which the indexing process would keep as its own peak
    (and often as heap it does not give back) for the rest of its run. ModelError when it failed."""
    external = ["--external"] if writes_external(source) else []
    proc = subprocess.run([sys.executable, "-m", "picseek.models.onnx_export", "--quantize", str(source),
                           str(target), *external, *(["--fp16"] if precision == "fp16" else [])],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
        raise ModelError(lines[-1] if lines else f"the quantizer exited with status {proc.returncode}")
