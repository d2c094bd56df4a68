"""The `openvino` runtime: a ready-ONNX model's int8 image tower on the CPU, compiled by OpenVINO after NNCF's
post-training int8 quantization, calibrated on the user's own photos (the `openvino` extra).

On a CPU with AVX-512 VNNI it ran a CLIP ViT-B/32 image tower at 1.21-1.34x the images/s of ONNX Runtime's dynamic
int8 (benchmarks/model_cost.py; cosine to fp32 >= 0.9995 on photos). Only calibrated int8 wins: OpenVINO's
weight-only compression and OpenVINO on ONNX Runtime's QDQ graph were no faster. Calibration needs photos, so:

- The quantized graph (`vision-ov-int8.xml/.bin` in `onnx.cache_folder(model_id)`, in a folder named by the openvino
  and nncf versions) is made once per model. Until it exists an index run embeds through ONNX Runtime's int8 tower
  as before and keeps the pixels of its first `CALIBRATION` images; then a background thread quantizes them in a
  child process (`python -m picseek.models.openvino_tower`: NNCF peaks near 1 GB, which the indexing process would
  keep), under a file lock so that two processes do not both build it, written atomically; and the run switches to
  OpenVINO once the graph is compiled. A failure logs one warning and the process stays on ONNX Runtime.
- A later process finds the graph and runs OpenVINO from its first batch. A query (an example image) uses it only
  where it exists: only an index run (`warm_up`) calibrates.

Compiled with the LATENCY hint (THROUGHPUT ran at 0.68x) on `onnx.default_threads()` threads, with OpenVINO's
compile cache under picseek's cache (a later compile: 0.2 s instead of 0.9 s).
"""
from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from .. import config, extras
from .._fs import FileLock
from ..errors import ModelError, UsageError, one_line
from . import onnx

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnxruntime", "openvino")
# What `auto` runs where the extra is installed (int8, the CPU): whole `picseek index` processes of a ViT-B/32 ran
# 1.18x (200 x 1 MP) and 1.06x (100 x 12 MP) faster than ONNX Runtime, 0.16 s more start-up (benchmarks/README.md).
AUTO = "openvino"
CALIBRATION = 32  # images whose pixels calibrate the int8 graph (tests set fewer)
XML = "vision-ov-int8.xml"


def check_runtime(value: str | None) -> str:
    value = (value or "auto").strip().lower()
    if value not in RUNTIMES:
        raise UsageError(f"unknown runtime {value!r}: use one of {', '.join(RUNTIMES)}")
    return value


def installed() -> bool:
    from importlib.util import find_spec

    return all(find_spec(m) is not None for m in extras.OPENVINO[1])


def resolve_runtime(value: str | None, precision: str, device: str = "cpu") -> str:
    """What runs the image tower of a ready-ONNX model at `precision` (already resolved) on `device`: `openvino`
    asked for where it cannot run is a ModelError (a missing extra: MissingExtraError); `auto` runs AUTO where it can,
    else onnxruntime."""
    value = check_runtime(value)
    if value == "auto":
        fits = precision == "int8" and not onnx.is_gpu(device) and installed()
        return AUTO if fits else "onnxruntime"
    if value == "openvino":
        if onnx.is_gpu(device):
            raise ModelError(f"runtime openvino runs the int8 image tower on the CPU, not on device {device}: use "
                             "--runtime onnxruntime (or auto) with a GPU")
        if precision != "int8":
            raise ModelError(f"runtime openvino runs the int8 image tower (precision {precision} runs in ONNX "
                             "Runtime): use --precision int8 (or auto), or --runtime onnxruntime")
        extras.require("runtime openvino", extras.OPENVINO)
    return value


def cache_target(model_id: str) -> Path:
    """Where the int8 graph of a model lives: beside its other cached graphs, in a folder named by the openvino
    and nncf versions that made it (another version makes it again)."""
    from importlib.metadata import version

    versions = f"ov{version('openvino')}-nncf{version('nncf')}"
    return onnx.cache_folder(model_id) / versions / XML


def compile_cache() -> Path:
    return config.cache_dir() / "openvino"


class OvTower:
    """A compiled OpenVINO int8 graph, with the interface of the towers in models/onnx_repo.py: `load()`, `inputs`
    (name, dtype) and `one_at_a_time`, and a call with named numpy inputs -> float32 rows."""

    runtime = "openvino"

    def __init__(self, path: Path, threads: int | None = None):
        self.path, self.threads = path, threads
        self._compiled = None
        self._lock = threading.Lock()
        self._local = threading.local()  # an infer request per thread
        self.inputs: list[tuple[str, type]] = []
        self.one_at_a_time = False

    def load(self) -> OvTower:
        with self._lock:
            if self._compiled is None:
                import openvino as ov

                core = ov.Core()
                compile_cache().mkdir(parents=True, exist_ok=True)
                core.set_property({"CACHE_DIR": str(compile_cache())})
                compiled = core.compile_model(str(self.path), "CPU", {
                    "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": self.threads or onnx.default_threads()})
                first = compiled.input(0).get_partial_shape()
                self.one_at_a_time = first.rank.is_static and first[0].is_static and first[0].get_length() == 1
                self.inputs = [(i.get_any_name(), np.float32) for i in compiled.inputs]
                self._compiled = compiled
            return self

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        self.load()
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        feeds = {name: np.ascontiguousarray(feeds[name], dtype=dtype) for name, dtype in self.inputs}
        n = len(next(iter(feeds.values())))
        out = self._compiled.output(0)
        if not self.one_at_a_time or n == 1:
            return np.array(request.infer(feeds)[out], dtype=np.float32)
        return np.concatenate([np.array(request.infer({k: v[i:i + 1] for k, v in feeds.items()})[out],
                                        dtype=np.float32) for i in range(n)])


class CalibratedTower:
    """The image tower under runtime openvino: OvTower where the int8 graph is cached, else `fallback()` (ONNX
    Runtime's int8 tower, made on first need) while it keeps the first CALIBRATION images' pixels, quantizes them in
    a child process on a thread and switches once that graph is compiled. `calibrating` (set by an index run's
    warm_up): only then are pixels kept; a query's tower uses the cached graph or ONNX Runtime."""

    def __init__(self, fallback, source: Path, target: Path, what: str, threads: int | None = None):
        self.fallback, self.source, self.target, self.what, self.threads = fallback, source, target, what, threads
        self.calibrating = False
        self._ort = None
        self._ov: OvTower | None = None
        self._failed = False
        self._started = False  # calibration pixels complete: never gathered again in this process
        self._building = False  # this process's thread makes or compiles the graph now
        self._pixels: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None

    @property
    def runtime(self) -> str:
        """What runs the next batch: openvino or onnxruntime."""
        return "openvino" if self._ov is not None else "onnxruntime"

    def _current(self):
        with self._lock:
            if self._ov is None and not self._failed and not self._building and self.target.is_file():
                self._ov = self._compile()  # cached by an earlier run (or another process): OpenVINO from now on
                if self._ov is not None:
                    log.debug("the %s runs in OpenVINO (%s)", self.what, self.target)
            if self._ov is not None:
                return self._ov
            if self._ort is None:
                self._ort = self.fallback()
            return self._ort

    def _compile(self) -> OvTower | None:
        try:
            return OvTower(self.target, self.threads).load()
        except Exception as exc:  # noqa: BLE001 - openvino raises its own types; ONNX Runtime still runs the model
            log.warning("cannot load the OpenVINO graph of the %s (%s): running it in ONNX Runtime", self.what,
                        one_line(exc))
            self._failed = True
            return None

    def load(self):
        tower = self._current()
        tower.load()
        return tower

    @property
    def inputs(self):
        return self.load().inputs

    @property
    def path(self) -> Path:
        """The graph the next batch runs: the OpenVINO graph, or ONNX Runtime's int8 copy."""
        return self.load().path

    @property
    def one_at_a_time(self) -> bool:
        return self.load().one_at_a_time

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        tower = self.load()
        out = tower(feeds)
        if tower is not self._ov and self.calibrating:
            self._keep(feeds[tower.inputs[0][0]])
        return out

    def _keep(self, pixels: np.ndarray) -> None:
        with self._lock:
            if self._started or self._failed:
                return
            have = sum(len(p) for p in self._pixels)
            self._pixels.append(np.array(pixels[:CALIBRATION - have], dtype=np.float32))
            if have + len(self._pixels[-1]) < CALIBRATION:
                return
            pixels, self._pixels, self._started, self._building = np.concatenate(self._pixels), [], True, True
        self.thread = threading.Thread(target=self._build, args=(pixels,), name="picseek-openvino", daemon=True)
        self.thread.start()

    def _build(self, pixels: np.ndarray) -> None:
        try:
            if not self.target.is_file():
                log.info("calibrating the OpenVINO int8 graph of the %s on %d photos (once; cached in %s)",
                         self.what, len(pixels), self.target.parent)
                if not quantize_in_child(self.source, self.target, pixels):  # picked up once it is there (_current)
                    log.info("another process makes the OpenVINO graph of the %s: ONNX Runtime until it is done",
                             self.what)
                    with self._lock:
                        self._building = False
                    return
            ov = OvTower(self.target, self.threads).load()
        except Exception as exc:  # noqa: BLE001 - any failure: one warning, the run goes on in ONNX Runtime
            log.warning("cannot make the OpenVINO int8 graph of the %s (%s): running it in ONNX Runtime",
                        self.what, one_line(exc))
            with self._lock:
                self._failed, self._building = True, False
            return
        with self._lock:
            self._ov, self._building = ov, False
        log.info("the %s runs in OpenVINO from now on", self.what)


# -- the quantizer, in a child process -------------------------------------------------------------------------------


def quantize_cached(source: Path, target: Path, pixels: np.ndarray) -> None:
    """NNCF's post-training int8 of the ONNX graph `source`, calibrated on `pixels` (normalized N x 3 x S x S rows),
    saved as `target` (.xml) and its .bin: both written in a temporary folder beside it and renamed into place, the
    weights first and the graph last (its presence means complete)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(source))
    with onnx.quiet_export():
        quantized = nncf.quantize(model, nncf.Dataset([pixels[i:i + 1] for i in range(len(pixels))]),
                                  model_type=nncf.ModelType.TRANSFORMER, subset_size=len(pixels))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        out = Path(tmp) / target.name
        ov.save_model(quantized, str(out), compress_to_fp16=False)
        os.replace(out.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(out, target)


BUSY = 3  # the child's exit status when another process holds the lock (it makes the same graph)


def quantize_in_child(source: Path, target: Path, pixels: np.ndarray) -> bool:
    """`quantize_cached` in a child process (NNCF's peak memory never stays here), the pixels passed through a
    temporary .npy beside `target`. The child takes the file lock itself and writes what it says to a file, not a
    pipe: an index run that ends first leaves it to finish the graph for the next run. True when the graph is there,
    False when another process holds the lock; ModelError (the child's last line) when it failed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    stem = target.parent / f".calibration-{os.getpid()}-{secrets.token_hex(4)}"
    npy, said = stem.with_suffix(".npy"), stem.with_suffix(".log")
    try:
        np.save(npy, pixels)
        with open(said, "w") as err:
            code = subprocess.run([sys.executable, "-m", __name__, str(source), str(target), str(npy), str(said)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err).returncode
        if code == BUSY:
            return False
        if code != 0:
            lines = [ln for ln in said.read_text(errors="replace").splitlines() if ln.strip()]
            raise ModelError(lines[-1] if lines else f"the quantizer exited with status {code}")
        return True
    finally:
        npy.unlink(missing_ok=True)
        said.unlink(missing_ok=True)


def no_telemetry() -> None:
    """NNCF sends usage events to Google Analytics unless the user opted out (openvino-telemetry: consent is assumed
    when no consent file exists). picseek's quantizer child sends nothing: with the package hidden from it, NNCF
    falls back to its no-op stub. Only this child process is affected (the user's own OpenVINO tools are not)."""
    sys.modules["openvino_telemetry"] = None


def _child(source: Path, target: Path, npy: Path, said: Path) -> int:
    """The child's work: the pixels read (and their file removed), the lock taken without waiting, the graph made
    unless it is there by then; done, it removes the file it writes to (its parent may be gone)."""
    no_telemetry()
    pixels = np.load(npy)
    npy.unlink(missing_ok=True)
    lock = FileLock(target.parent / ".lock")
    if not lock.acquire(wait=False):
        return BUSY
    try:
        if not target.is_file():
            quantize_cached(source, target, pixels)
    finally:
        lock.release()
    said.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(*map(Path, sys.argv[1:5])))
