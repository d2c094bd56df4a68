"""Where the model runs (models/onnx.py `device`): names, ONNX Runtime providers, the precision each device runs,
and the CLI's answer on a machine without a GPU. The GPU itself is exercised by benchmarks/gpu_index.py; these
cover the plumbing on the CPU (tests/unit/test_onnx_repo.py runs a whole index with a GPU's providers asked)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from picseek import config
from picseek.errors import ModelError, UsageError
from picseek.models import onnx

from cli_helpers import cli_env, run
from conftest import make_folder
from needs import need_module


@pytest.mark.parametrize("given, canonical", [("cpu", "cpu"), (None, "cpu"), (" CUDA ", "cuda"),
                                              ("cuda:1", "cuda:1")])
def test_device_names_are_canonical(given, canonical):
    assert onnx.check_device(given) == canonical


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cpu:0", "mps"])
def test_unknown_devices_are_usage_errors(bad):
    with pytest.raises(UsageError, match="use cpu, cuda or cuda:N"):
        onnx.check_device(bad)


def test_providers_name_the_gpu_asked_for_and_keep_the_cpu_behind_it(monkeypatch):
    ort = need_module("onnxruntime")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert onnx.providers("cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert onnx.providers("cuda") == [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    assert onnx.providers("cpu") == ["CPUExecutionProvider"]


def test_a_gpu_this_onnxruntime_cannot_use_is_an_error_not_a_cpu_run(monkeypatch):
    ort = need_module("onnxruntime")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="pip install onnxruntime-gpu"):
        onnx.providers("cuda")


def test_each_device_runs_the_precisions_it_can():
    assert onnx.resolve_precision("auto", device="cuda") == "fp16"
    assert onnx.resolve_precision("fp32", device="cuda:0") == "fp32"
    with pytest.raises(ModelError, match="int8 runs on the CPU"):
        onnx.resolve_precision("int8", device="cuda")
    with pytest.raises(ModelError, match="fp16 is for a GPU"):
        onnx.resolve_precision("fp16", device="cpu")


def test_fp16_conversion_keeps_float32_inputs_and_outputs_and_the_vectors(tmp_path):
    """The converter's copy of a small graph: fp16 weights inside, float32 at its edges, the same outputs."""
    need_module("onnxruntime")
    import numpy as np
    import onnx as onnx_lib
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 32])], [w])
    src = tmp_path / "fp32.onnx"
    onnx_lib.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    onnx.quantize_cached(src, tmp_path / "out" / "fp16.onnx", precision="fp16")
    half = onnx_lib.load(str(tmp_path / "out" / "fp16.onnx"))
    assert {t.data_type for t in half.graph.initializer} == {TensorProto.FLOAT16}
    assert [i.type.tensor_type.elem_type for i in (*half.graph.input, *half.graph.output)] == [TensorProto.FLOAT] * 2
    x = rng.standard_normal((4, 64)).astype(np.float32)
    ref, out = (onnx.OrtTower(p)(x=x) for p in (src, tmp_path / "out" / "fp16.onnx"))
    cos = np.sum(ref * out, 1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(out, axis=1)
    assert cos.min() > 0.999, cos


def test_batch_size_defaults_to_the_devices(tmp_path, monkeypatch):
    from picseek.ingest.pipeline import DEFAULT_BATCH_SIZE, GPU_BATCH_SIZE
    from picseek.library import Library

    monkeypatch.delenv(config.env_name("batch_size"), raising=False)
    assert Library(tmp_path / "a")._batch_size(None) == DEFAULT_BATCH_SIZE
    assert Library(tmp_path / "b", device="cuda")._batch_size(None) == GPU_BATCH_SIZE
    assert Library(tmp_path / "c", device="cuda")._batch_size(8) == 8
    monkeypatch.setenv(config.env_name("batch_size"), "64")
    assert Library(tmp_path / "d", device="cuda")._batch_size(None) == 64


def test_index_on_a_gpu_this_machine_lacks_says_what_to_install(tmp_path):
    ort = need_module("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a GPU provider")
    make_folder(tmp_path / "photos", 2)
    args = ["--library", tmp_path / "lib", "index", tmp_path / "photos", "--model", "builtin", "--device"]
    res = run(*args, "cuda", env=cli_env(tmp_path), check=False)
    assert res.returncode == 3, res.stderr
    assert "onnxruntime-gpu" in res.stderr and "Traceback" not in res.stderr
    status = run("--library", tmp_path / "lib", "status", env=cli_env(tmp_path)).stdout
    assert re.search(r"model:\s+none yet", status) and re.search(r"images:\s+0\n", status), status  # nothing recorded
    run("--library", tmp_path / "lib", "index", tmp_path / "photos", "--model", "builtin", env=cli_env(tmp_path))
    again = run(*args, "cuda", env=cli_env(tmp_path), check=False)  # a re-scan with nothing new: checked all the same
    assert again.returncode == 3 and "onnxruntime-gpu" in again.stderr, again.stderr
    bad = run(*args, "tpu", env=cli_env(tmp_path), check=False)
    assert bad.returncode == 2 and "use cpu, cuda or cuda:N" in bad.stderr, bad.stderr


def test_the_install_script_swaps_in_the_gpu_build_after_picseek():
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(["bash", str(root / "scripts" / "install.sh"), "--venv", "/nonexistent/v", "--gpu",
                          "--dry-run"], capture_output=True, text=True, check=True).stderr.splitlines()
    steps = [i for i, line in enumerate(out) if line.startswith("+ ")]
    installs = [out[i] for i in steps if "pip" in out[i]]
    assert [("install" in s and str(root) in s, "uninstall" in s and "onnxruntime" in s,
             "install" in s and "onnxruntime-gpu" in s) for s in installs] == [
        (True, False, False), (False, True, False), (False, False, True)], installs
    pyproject = (root / "pyproject.toml").read_text()
    assert re.search(r'"onnxruntime>=[\d.]+,<2"', pyproject) and "onnxruntime-gpu>=1.20,<2" in installs[-1]
