"""The model cost C on the CPU: the image tower's images/s run each way, how close each stays to fp32 on real photos,
and how close the fastest comes to this CPU's int8 arithmetic. It prints figures; it asserts nothing.

    python benchmarks/model_cost.py --model FOLDER            # a ready-ONNX model folder (immich's layout)
    python benchmarks/model_cost.py --model FOLDER --repeats 9 --batch 16 --photos 48

Ways (every one on all the cores this process may use, batch --batch, interleaved round by round, median):
  fp32            the downloaded graph in ONNX Runtime
  int8 dynamic    picseek's default: MatMul/Gemm weights int8, activations quantized per batch (models/onnx.py)
  int8 static     QDQ, weights per channel, activation ranges calibrated on real photos (ONNX Runtime's
                  quantize_static after its pre-processing), MatMul/Gemm only, or also the patch Conv (--static-ops)
  openvino fp32 / openvino int8   where the openvino (and, for int8, nncf) packages are importable: the same graph
                  compiled by OpenVINO for the CPU (--openvino-hint, all cores), int8 by NNCF's post-training
                  quantization on the same calibration photos
Closeness: the cosine of each image vector to fp32's on --photos real photos (scikit-image's sample photos and
generated photo-like JPEGs, none used for calibration), and the overlap of the top 10 of five text queries.
Peak: int8 GEMM (ONNX Runtime's MatMulInteger, u8 x s8 -> s32, 2048^3, best of 9) in GOPS next to what the fastest
way achieves on the model's own MatMuls (2 x multiply-adds per image x images/s).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_index import cpu_flags  # noqa: E402

QUERIES = ["a dog", "a red car at night", "mountains", "a beach", "people in a city"]


def photos(n: int, skip: int = 0) -> list:
    """Real photos (scikit-image's colour samples), then photo-like generated ones, as PIL images."""
    from PIL import Image
    from skimage import data

    real = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field(),
            data.immunohistochemistry(), data.retina(), data.colorwheel(), data.cat(), data.logo()[..., :3]]
    imgs = [Image.fromarray(a).convert("RGB") for a in real]
    rng = np.random.default_rng(1)
    while len(imgs) < n + skip:  # crops and flips of the real ones: new framings, same kind of content
        base = imgs[int(rng.integers(len(real)))]
        w, h = base.size
        x0, y0 = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
        crop = base.crop((x0, y0, x0 + int(w * rng.uniform(0.5, 0.67)), y0 + int(h * rng.uniform(0.5, 0.67))))
        imgs.append(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop)
    return imgs[skip:skip + n]


def pixels_of(imgs, spec) -> np.ndarray:
    from picseek.models.base import normalize, prepare_image

    return normalize(np.stack([prepare_image(im, spec) for im in imgs]), spec)


def ort_session(path: Path):
    from picseek.models.onnx import OrtTower

    tower = OrtTower(path)
    name = tower.inputs[0]
    return lambda x: tower(**{name: x})


def static_int8(source: Path, out: Path, calib: np.ndarray, ops: list[str]) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.batches, None)

    pre = out.with_name("pre.onnx")
    quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, op_types_to_quantize=ops,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})


def openvino_runs(source: Path, calib: np.ndarray, hint: str = "THROUGHPUT") -> dict:
    """OpenVINO fp32 and NNCF int8 of the same graph, where the packages are importable."""
    try:
        import openvino as ov
    except ImportError:
        print("openvino: not installed (pip install openvino nncf), left out")
        return {}
    core = ov.Core()
    config = {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": len(os.sched_getaffinity(0))}
    model = core.read_model(str(source))
    runs = {}

    def runner(m):
        compiled = core.compile_model(m, "CPU", config)
        request = compiled.create_infer_request()
        return lambda x: np.asarray(request.infer({0: x})[compiled.output(0)], dtype=np.float32)

    runs["openvino fp32"] = runner(model)
    try:
        import nncf
    except ImportError:
        print("nncf: not installed, openvino int8 left out")
        return runs
    quantized = nncf.quantize(model, nncf.Dataset([calib[i:i + 1] for i in range(len(calib))]),
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calib))
    runs["openvino int8"] = runner(quantized)
    return runs


def matmul_macs(path: Path) -> float:
    """Multiply-adds per image in a ViT image tower's MatMul/Gemm nodes, from its weights: T tokens (the position
    embedding's rows) through each weight matrix K x N (the final projection sees the one pooled token), plus the
    attention's two products per layer (T x T x width each; the MatMuls between activations)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    pos = [d for name, d in weights.items() if "position" in name.lower() and len(d) == 2]
    if not pos:
        raise SystemExit(f"{path}: no position embedding found (not a ViT image tower?)")
    tokens, width = pos[0]
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t).shape for n in model.graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    macs = 0.0
    products = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm")]
    for i, node in enumerate(products):
        b = weights.get(node.input[1]) or consts.get(node.input[1])
        if b is not None and len(b) == 2:
            k, n = (b[0], b[1]) if node.op_type == "MatMul" or not any(a.name == "transB" and a.i for a in
                                                                       node.attribute) else (b[1], b[0])
            macs += (1 if i == len(products) - 1 else tokens) * k * n  # the last: the projection of the pooled token
        else:  # an attention product: T x T x width over all heads
            macs += tokens * tokens * width
    return macs


def int8_gemm_gops(repeats: int = 9, size: int = 2048) -> float:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from picseek.models.onnx import default_threads

    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size]),
                               helper.make_tensor_value_info("b", TensorProto.INT8, [size, size])],
                              [helper.make_tensor_value_info("c", TensorProto.INT32, [size, size])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = default_threads()
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.integers(0, 255, (size, size), dtype=np.uint8),
             "b": rng.integers(-127, 127, (size, size), dtype=np.int8)}
    sess.run(None, feeds)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / min(times) / 1e9  # a peak: the best run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="a ready-ONNX model folder (immich's layout)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--photos", type=int, default=40, help="real photos for closeness")
    ap.add_argument("--calibration", type=int, default=32, help="other real photos to calibrate static int8")
    ap.add_argument("--static-ops", default="MatMul,Gemm", help="ops static int8 quantizes, e.g. MatMul,Gemm,Conv")
    ap.add_argument("--no-openvino", action="store_true")
    ap.add_argument("--openvino-hint", default="THROUGHPUT", choices=["THROUGHPUT", "LATENCY"],
                    help="OpenVINO's performance hint (its streams and threads follow from it)")
    args = ap.parse_args(argv)
    from picseek.models import onnx as ponnx
    from picseek.models.registry import load_embedder

    print(f"CPU: {cpu_flags()}")
    ref = load_embedder(str(args.model), precision="fp32")
    spec, source = ref.image_spec, args.model / "visual" / "model.onnx"
    test_px = pixels_of(photos(args.photos), spec)
    calib = pixels_of(photos(args.calibration, skip=args.photos), spec)
    tmp = Path(tempfile.mkdtemp(prefix="model-cost-"))
    runs = {"fp32": ort_session(source)}
    ponnx.quantize(source, tmp / "dynamic.onnx")
    runs["int8 dynamic"] = ort_session(tmp / "dynamic.onnx")
    t0 = time.perf_counter()
    static_int8(source, tmp / "static.onnx", calib, args.static_ops.split(","))
    print(f"static int8 calibrated on {len(calib)} photos in {time.perf_counter() - t0:.0f} s "
          f"(ops {args.static_ops})")
    runs["int8 static"] = ort_session(tmp / "static.onnx")
    if not args.no_openvino:
        runs.update(openvino_runs(source, calib, args.openvino_hint))
    batch = np.resize(test_px, (args.batch, *test_px.shape[1:])).astype(np.float32)
    for run in runs.values():
        run(batch)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, run in runs.items():
            t0 = time.perf_counter()
            run(batch)
            times[k].append(time.perf_counter() - t0)
    rate = {k: args.batch / statistics.median(t) for k, t in times.items()}

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    want = unit(np.concatenate([runs["fp32"](test_px[i:i + args.batch]) for i in range(0, len(test_px), args.batch)]))
    texts = unit(ref.embed_texts(QUERIES))
    print(f"\nimage tower {args.model.name}, {spec.size} px, batch {args.batch}, {ponnx.default_threads()} threads, "
          f"median of {args.repeats}; closeness on {len(test_px)} real photos")
    print(f"{'way':<16} {'images/s':>9} {'vs dynamic':>10} {'cos min':>9} {'cos median':>10} {'top-10 overlap':>14}")
    for k, run in runs.items():
        got = unit(np.concatenate([run(test_px[i:i + args.batch]) for i in range(0, len(test_px), args.batch)]))
        cos = np.sum(want * got, axis=1)
        overlap = np.mean([len(set(np.argsort(-(want @ t))[:10]) & set(np.argsort(-(got @ t))[:10])) / 10
                           for t in texts])
        print(f"{k:<16} {rate[k]:9.1f} {rate[k] / rate['int8 dynamic']:9.2f}x {cos.min():9.5f} "
              f"{np.median(cos):10.5f} {overlap:14.2f}")
    macs = matmul_macs(source)
    peak = int8_gemm_gops()
    best = max((k for k in runs if "int8" in k), key=rate.get)
    achieved = 2 * macs * rate[best] / 1e9
    allows = peak * 1e9 / (2 * macs)
    print(f"\nint8 GEMM peak (MatMulInteger 2048^3, best of 9, {ponnx.default_threads()} threads): {peak:.0f} GOPS; "
          f"the model's MatMuls: {macs / 1e9:.2f} G multiply-adds per image, so the peak allows {allows:.0f} "
          f"images/s; {best} reaches {achieved:.0f} GOPS on them ({achieved / peak:.0%} of the peak)")


if __name__ == "__main__":
    main()
