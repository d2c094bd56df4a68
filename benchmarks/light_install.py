"""The light install (issue 14): what `scripts/install.sh` puts on disk, how long it takes, and what the default
environment does without torch, against a checkout from before the change and against rclip 4.0.8. It prints figures
as markdown tables (and --out writes them as JSON); it asserts nothing (this is not a test).

    python benchmarks/light_install.py                                     # this checkout only
    python benchmarks/light_install.py --before /tmp/before --rclip-python /usr/bin/python3.12 --out li.json

--before is a checkout from before the change, e.g. `git worktree add /tmp/before 00d41ba` (remove it afterwards with
`git worktree remove --force /tmp/before`). Run the script with a Python that has torch + transformers (the
development environment): they build the random-weight CLIP and export it; the environments measured are new ones.

1. Installs: `bash CHECKOUT/scripts/install.sh --venv DIR [--extras server]` into new folders, --installs times per
   configuration (the first fills pip's cache; the last one is quoted, wheels cached; picseek itself is built from
   the checkout every time). For each: wall time, `du -sm` of the venv, its __pycache__ share, the largest
   distributions (disk use of the files in their RECORD), whether torch*/nvidia-*/transformers are in it, number of
   distributions. The `server` extra is the container's install: the image is estimated as python:3.11-slim (about
   130 MB uncompressed, an estimate: no docker here) + that venv. With --rclip-python: rclip 4.0.8's venv (`pip
   install rclip==4.0.8`, Python >= 3.12) and picseek's default venv made with that same Python (a Python 3.11 venv
   carries setuptools, a 3.12 one does not).
2. Cold `picseek --library L search "a dog" --json` on a built-in-model library (sample photos that scikit-image
   ships, each also upscaled to 12 MP; indexed once, which also fills the built-in model's caches (class embeddings,
   ONNX graph): the searches run with warm caches and a warm page cache): median of --searches whole processes, after
   one untimed run. One more run in the same venv with `python -X importtime` reports whether torch / transformers
   were imported, the number of modules, peak RSS and the heaviest top-level imports.
3. An ONNX CLIP library: a full-size ViT-B/32 CLIP with random weights in Hugging Face format (built as
   index_speed.py builds it), exported with torch into immich's layout (config.json, visual/, textual/: the steps of
   tests/unit/test_onnx_repo.py's `_export`, at full size). In the new default venv: the first `picseek index --model
   IMMICH_FOLDER PHOTOS` with an empty cache (the default precision quantizes the image tower to int8 once), then a
   second index into a new library (cache warm): wall time and peak RSS (VmHWM) of every process in the tree (the
   picseek process, its decode workers, an export or quantize child), sampled every 50 ms; then the cold searches.
   In the --before venv the same model in Hugging Face format (`--model HF_FOLDER`: the first index exports it to
   ONNX in a child process, with torch), and the immich folder as well.

Everything runs offline (HF_HUB_OFFLINE=1) with its own PICSEEK_CACHE_DIR per venv and model under --work.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import index_speed as base  # noqa: E402  (log, the random CLIP builder)

from stress import cpu  # noqa: E402  (CPU model name and SIMD flags)

QUERY = "a dog"
SLIM_BASE_MB = 130  # python:3.11-slim, uncompressed (docker image ls), an estimate: docker is not available here
HEAVY = re.compile(r"^(torch.*|nvidia-.*|transformers|triton)$", re.I)
SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
CONTEXT = 77  # CLIP's text length
OPENAI_MEAN, OPENAI_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]

# Runs picseek.cli as `picseek ARGS` does; at exit writes to $BENCH_PROBE_OUT this process's peak RSS (VmHWM, see
# index_speed.py for why not ru_maxrss) and which heavy modules it had imported.
PROBE = """\
import atexit, json, os, runpy, sys
def _dump():
    hwm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    mods = sys.modules
    with open(os.environ["BENCH_PROBE_OUT"], "w") as f:
        json.dump({"hwm_kb": hwm, "modules": len(mods), "torch": "torch" in mods,
                   "transformers": "transformers" in mods, "onnxruntime": "onnxruntime" in mods}, f)
atexit.register(_dump)
sys.argv[0] = "picseek"
runpy.run_module("picseek.cli", run_name="__main__", alter_sys=True)
"""

# Writes a CLIP in Hugging Face format (random weights) in immich's layout: run by a Python with torch and
# transformers, with the measured checkout's src first on sys.path (its export helpers). The steps of
# tests/unit/test_onnx_repo.py's _export for kind "clip", at full size: image tower batch fixed at 1 (immich's
# current exporter), text input "text" int32 with a free batch.
EXPORT = """\
import json, sys
from pathlib import Path
hf, out, src, context = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sys.path.insert(0, src)
import torch
from transformers import AutoModel, AutoTokenizer
from picseek.models import hf as picseek_hf, onnx, onnx_repo
model = AutoModel.from_pretrained(hf, dtype=torch.float32).eval()
side = model.config.vision_config.image_size
(out / "visual").mkdir(parents=True)
(out / "textual").mkdir()
ids = torch.ones((1, context), dtype=torch.int32)
with torch.inference_mode(), onnx.quiet_export():
    torch.onnx.export(picseek_hf._vision_module(model), (torch.zeros(1, 3, side, side),), str(out / onnx_repo.VISUAL),
                      input_names=["image"], output_names=["embedding"], opset_version=17, dynamo=False)
    torch.onnx.export(picseek_hf._text_module(model, False), (ids,), str(out / onnx_repo.TEXTUAL), input_names=["text"],
                      output_names=["text_embedding"], opset_version=17, dynamo=False,
                      dynamic_axes={"text": {0: "batch_size"}})
mean, std = json.loads(sys.argv[5]), json.loads(sys.argv[6])
(out / onnx_repo.PREPROCESS).write_text(json.dumps({"size": [side, side], "mode": "RGB", "mean": mean, "std": std,
    "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}))
tok = AutoTokenizer.from_pretrained(hf)
tok.save_pretrained(out / "textual")
vc, tc = model.config.vision_config, model.config.text_config
config = {"embed_dim": model.config.projection_dim,
          "vision_cfg": {"image_size": side, "layers": vc.num_hidden_layers, "width": vc.hidden_size,
                         "patch_size": vc.patch_size},
          "text_cfg": {"context_length": context, "vocab_size": len(tok), "width": tc.hidden_size,
                       "heads": tc.num_attention_heads, "layers": tc.num_hidden_layers}}
(out / onnx_repo.CONFIG).write_text(json.dumps(config))
special = {"eos_token": tok.eos_token, "unk_token": tok.unk_token, "pad_token": tok.pad_token}
(out / onnx_repo.SPECIAL_TOKENS).write_text(json.dumps(special))
(out / "README.md").write_text("random-weight ViT-B/32 CLIP in immich's layout (benchmark input)\\n")
"""


# -- helpers -------------------------------------------------------------------------------------------------------
log = base.log


def median(xs) -> float:
    return statistics.median(xs) if xs else float("nan")


def clean_env(extra: dict | None = None) -> dict:
    """The environment of every measured command: not the benchmark's own venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update(extra or {})
    return env


def tail(text: str, n: int = 15) -> str:
    lines = [ln for ln in (text or "").splitlines() if ln.strip() and "is ignored: it is neither" not in ln]
    return "\n".join(lines[-n:])


def du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) / 1024


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def dist_sizes(venv: Path) -> dict[str, float]:
    """name -> MB on disk of the files each installed distribution's RECORD lists (.pyc included: pip records them)."""
    sp = site_packages(venv)
    sizes = {}
    for info in sp.glob("*.dist-info"):
        name = info.name[: -len(".dist-info")].rsplit("-", 1)[0]
        total = 0
        record = info / "RECORD"
        rows = record.read_text().splitlines() if record.is_file() else []
        for row in rows:
            rel = row.rsplit(",", 2)[0].strip('"')
            try:
                st = (sp / rel).lstat()
            except OSError:
                continue
            total += st.st_blocks * 512
        sizes[name] = total / 2**20
    return sizes


def pycache_mb(venv: Path) -> float:
    total = 0
    for d in venv.rglob("__pycache__"):
        total += sum(f.lstat().st_blocks * 512 for f in d.iterdir())
    return total / 2**20


def venv_facts(venv: Path) -> dict:
    sizes = dist_sizes(venv)
    top = sorted(sizes.items(), key=lambda kv: -kv[1])
    py = subprocess.run([str(venv / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
                        capture_output=True, text=True).stdout.strip()
    return {"python": py, "mb": round(du_mb(venv), 1), "pycache_mb": round(pycache_mb(venv), 1),
            "packages": len(sizes), "top": [(n, round(mb, 1)) for n, mb in top[:8]],
            "heavy": sorted(n for n in sizes if HEAVY.match(n.replace("_", "-"))),
            "has_pip_setuptools": [n for n in sizes if n.lower() in ("pip", "setuptools")]}


# -- 1. installs -----------------------------------------------------------------------------------------------------
def install_cmd(kind: str, source: Path | None, venv: Path, python: str, extras: str) -> list[list[str]]:
    if kind == "rclip":
        return [[python, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "rclip==4.0.8"]]
    cmd = ["bash", str(source / "scripts" / "install.sh"), "--venv", str(venv), "--python", python]
    return [cmd + (["--extras", extras] if extras else [])]


def bench_install(label: str, kind: str, source: Path | None, python: str, extras: str, root: Path, installs: int,
                  keep: bool) -> dict:
    walls, venv, failed = [], None, None
    env = clean_env({"PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    for i in range(installs):
        venv = root / f"{label}-{i + 1}"
        if venv.exists():
            shutil.rmtree(venv)
        cmds = install_cmd(kind, source, venv, python, extras)
        t0 = time.perf_counter()
        for cmd in cmds:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                failed = f"`{' '.join(cmd)}` exit {proc.returncode}:\n{tail(proc.stderr)}"
                break
        if failed:
            log(f"install {label} FAILED: {failed}")
            return {"label": label, "error": failed, "cmd": shlex.join(cmds[-1])}
        walls.append(time.perf_counter() - t0)
        log(f"install {label} #{i + 1}: {walls[-1]:.1f} s")
        if i < installs - 1 and not keep:
            shutil.rmtree(venv)
    res = {"label": label, "walls": [round(w, 1) for w in walls], "venv": str(venv),
           "cmd": " && ".join(shlex.join(c) for c in install_cmd(kind, source, Path("DIR"), python, extras))}
    res.update(venv_facts(venv))
    return res


def print_installs(rows: list[dict], installs: int) -> None:
    print(f"\n## 1. Installs (wall s: install 1 .. {installs}; the last one is quoted: wheels in pip's cache, "
          "picseek built from the checkout)\n")
    print("| environment | Python | install s (quoted) | all installs s | venv MB (du) | of which __pycache__ MB | "
          "distributions | torch* / nvidia-* / transformers | largest distributions, MB |")
    print("|---|---|---:|---|---:|---:|---:|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['label']} | | FAILED | | | | | | {r['error'].splitlines()[0]} |")
            continue
        top = ", ".join(f"{n} {mb:.0f}" for n, mb in r["top"][:6])
        print(f"| {r['label']} | {r['python']} | {r['walls'][-1]:.1f} | {' / '.join(f'{w:.1f}' for w in r['walls'])}"
              f" | {r['mb']:.0f} | {r['pycache_mb']:.0f} | {r['packages']} | {', '.join(r['heavy']) or 'none'} | "
              f"{top} |")
    servers = [r for r in rows if r["label"].endswith("server") and "error" not in r]
    if servers:
        print(f"\nContainer image estimate (python:3.11-slim ≈ {SLIM_BASE_MB} MB uncompressed, an estimate: docker "
              "is not available here; + the `server` venv as install.sh leaves it, .pyc included):\n")
        print("| image | venv MB | image MB (estimate) |")
        print("|---|---:|---:|")
        for r in servers:
            print(f"| {r['label']} | {r['mb']:.0f} | ≈ {SLIM_BASE_MB + r['mb']:.0f} |")


# -- photos, model -----------------------------------------------------------------------------------------------------
def make_photos(folder: Path, make_photos_py: Path) -> int:
    """The sample photos scikit-image ships (JPEG q90), each also upscaled to 4000 x 3000; else make_photos.py."""
    if (folder / ".complete").is_file():
        return len(list(folder.glob("*.jpg")))
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    try:
        from PIL import Image
        from skimage import data
    except ImportError:
        log(f"no scikit-image here: generating photos with {make_photos_py}")
        subprocess.run([sys.executable, str(make_photos_py), str(folder), "4"], check=True)
    else:
        for name in SAMPLES:
            try:
                arr = getattr(data, name)()
            except Exception as exc:  # noqa: BLE001 - a sample that needs a download is skipped
                log(f"skimage sample {name} unavailable ({exc}); skipped")
                continue
            im = Image.fromarray(arr[..., :3] if arr.ndim == 3 else arr).convert("RGB")
            im.save(folder / f"{name}.jpg", quality=90)
            im.resize((4000, 3000), Image.BICUBIC).save(folder / f"{name}-12mp.jpg", quality=90)
    (folder / ".complete").write_text("ok")
    return len(list(folder.glob("*.jpg")))


def ensure_models(work: Path, source: Path, torch_python: str, bpe: str | None) -> tuple[Path, Path, float]:
    """(Hugging Face folder, immich-layout folder, export seconds or 0 when cached)."""
    hf = base.ensure_random_clip(work, bpe)
    immich = work / "models" / "random-clip-vit-b-32-immich"
    if (immich / ".complete").is_file():
        return hf, immich, 0.0
    if immich.exists():
        shutil.rmtree(immich)
    log(f"exporting {hf} into immich's layout at {immich} (once, with torch: about a minute) ...")
    t0 = time.perf_counter()
    subprocess.run([torch_python, "-c", EXPORT, str(hf), str(immich), str(source / "src"), str(CONTEXT),
                    json.dumps(OPENAI_MEAN), json.dumps(OPENAI_STD)], check=True,
                   env=clean_env({"TOKENIZERS_PARALLELISM": "false"}))
    (immich / ".complete").write_text("ok")
    return hf, immich, time.perf_counter() - t0


# -- process tree, runs ------------------------------------------------------------------------------------------------
def _read(path: str, binary: bool = False):
    try:
        with open(path, "rb" if binary else "r") as f:
            return f.read()
    except OSError:
        return None


def _hwm_kb(pid: int) -> int:
    for line in (_read(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _role(cmdline: bytes) -> str:
    text = cmdline.replace(b"\0", b" ").decode(errors="replace")
    if "onnx_export" in text:
        return "quantize child" if "--quantize" in text else "export child"
    if "resource_tracker" in text:
        return "resource tracker"
    if "spawn_main" in text or "multiprocessing" in text:
        return "decode worker"
    return Path(text.split(" ", 1)[0]).name or "?"


class TreeSampler(threading.Thread):
    """Peak RSS (VmHWM, which only grows) of every descendant of `root`, sampled every `interval` s. A child whose
    command line is still its parent's (forked, not yet exec'd) shares the parent's pages and is not sampled."""

    def __init__(self, root: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.root, self.interval, self.stop = root, interval, threading.Event()
        self.peaks: dict[int, dict] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            stack = [(self.root, _read(f"/proc/{self.root}/cmdline", True))]
            while stack:
                pid, parent_cmd = stack.pop()
                for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else ():
                    for child in (_read(f"/proc/{pid}/task/{tid}/children") or "").split():
                        cmd = _read(f"/proc/{child}/cmdline", True)
                        if not cmd:
                            continue
                        stack.append((int(child), cmd))
                        if cmd == parent_cmd:
                            continue
                        hwm = _hwm_kb(int(child))
                        p = self.peaks.setdefault(int(child), {"role": _role(cmd), "kb": 0})
                        p["kb"] = max(p["kb"], hwm)
            self.stop.wait(self.interval)


def probe_run(python: Path, args: list[str], env: dict, importtime: bool = False, timeout: int = 1800) -> dict:
    """`picseek ARGS` through PROBE: wall time, exit status, VmHWM of the main process and of every descendant."""
    with tempfile.TemporaryDirectory(prefix="picseek-probe-") as tmp:
        out = Path(tmp) / "probe.json"
        cmd = [str(python)] + (["-X", "importtime"] if importtime else []) + ["-c", PROBE, *args]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env={**env, "BENCH_PROBE_OUT": str(out)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
        probe = json.loads(out.read_text()) if out.is_file() else {}
    kids = sorted(sampler.peaks.values(), key=lambda p: -p["kb"])
    res = {"rc": proc.returncode, "wall": wall, "stdout": stdout, "stderr": stderr, "probe": probe,
           "main_mb": probe.get("hwm_kb", 0) / 1024, "children": [(p["role"], round(p["kb"] / 1024)) for p in kids]}
    if importtime:
        res["imports"] = heaviest_imports(stderr)
    return res


def heaviest_imports(stderr: str, n: int = 4) -> list[tuple[str, float]]:
    """-X importtime's top-level imports, summed by root package: [(package, ms)], the heaviest first."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) == 1:  # depth 0: one space after the bar
            root = m.group(4).split(".")[0]
            totals[root] = totals.get(root, 0.0) + int(m.group(2)) / 1000
    return sorted(totals.items(), key=lambda kv: -kv[1])[:n]


def bench_search(venv: Path, lib: Path, env: dict, searches: int) -> dict:
    """Cold `picseek --library LIB search QUERY --json`: whole-process wall times after one untimed run, then one
    probe run (-X importtime) for the modules it imported."""
    cmd = [str(venv / "bin" / "picseek"), "--library", str(lib), "search", QUERY, "--json"]
    warm = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if warm.returncode != 0:
        return {"error": f"exit {warm.returncode}:\n{tail(warm.stderr)}", "cmd": shlex.join(cmd)}
    walls = []
    for _ in range(searches):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        walls.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            return {"error": f"exit {proc.returncode}:\n{tail(proc.stderr)}", "cmd": shlex.join(cmd)}
    hits = len(json.loads(proc.stdout))
    probe = probe_run(venv / "bin" / "python", cmd[1:], env, importtime=True, timeout=600)
    installed = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import importlib.util as u; print(u.find_spec('torch') is not None)"],
                               capture_output=True, text=True, env=env).stdout.strip() == "True"
    return {"walls": [round(w, 3) for w in walls], "median": median(walls), "min": min(walls), "max": max(walls),
            "hits": hits, "torch_installed": installed, "torch_imported": probe["probe"].get("torch"),
            "transformers_imported": probe["probe"].get("transformers"), "modules": probe["probe"].get("modules"),
            "peak_mb": round(probe["main_mb"]), "imports": probe.get("imports", []), "cmd": shlex.join(cmd)}


def bench_index(venv: Path, lib: Path, model: str, photos: Path, env: dict, extra: tuple = ()) -> dict:
    args = ["--library", str(lib), "index", str(photos), "--model", model, *extra, "--json"]
    res = probe_run(venv / "bin" / "python", args, env)
    out = {"cmd": shlex.join([f"{venv}/bin/picseek", *args]), "wall": round(res["wall"], 2),
           "main_mb": round(res["main_mb"]), "children": res["children"],
           "peak_any_mb": max([round(res["main_mb"])] + [mb for _, mb in res["children"]]),
           "export_child": any(role == "export child" for role, _ in res["children"]),
           "torch_imported": res["probe"].get("torch"), "log": tail(res["stderr"], 6)}
    if res["rc"] != 0:
        out["error"] = f"exit {res['rc']}:\n{tail(res['stderr'])}"
        return out
    try:
        rep = json.loads(res["stdout"])
        out.update(embedded=rep.get("embedded"), errors=rep.get("errors"), report_s=rep.get("seconds"))
    except json.JSONDecodeError:
        pass
    low = res["stderr"].lower()
    out["quantized"] = "quantiz" in low
    out["exported"] = out["export_child"] or "exporting" in low
    return out


def print_searches(rows: list[dict], searches: int) -> None:
    print(f"\n## 2-3. Cold `picseek --library L search \"{QUERY}\" --json` (whole process; median of {searches} after "
          "one untimed run; the model's caches and the page cache warm)\n")
    print("| venv | library model | median s | min - max s | hits | torch installed | torch imported | "
          "transformers imported | modules | peak RSS MB | heaviest top-level imports, ms (-X importtime run) |")
    print("|---|---|---:|---|---:|---|---|---|---:|---:|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['venv']} | {r['model']} | FAILED | | | | | | | | {r['error'].splitlines()[-1]} |")
            continue
        imps = ", ".join(f"{n} {ms:.0f}" for n, ms in r["imports"])
        print(f"| {r['venv']} | {r['model']} | {r['median']:.2f} | {r['min']:.2f} - {r['max']:.2f} | {r['hits']} | "
              f"{yn(r['torch_installed'])} | {yn(r['torch_imported'])} | {yn(r['transformers_imported'])} | "
              f"{r['modules']} | {r['peak_mb']} | {imps} |")


def yn(v) -> str:
    return "?" if v is None else ("yes" if v else "no")


def print_indexes(rows: list[dict], n_photos: int) -> None:
    print(f"\n## 3. Index {n_photos} photos with a ViT-B/32 CLIP (random weights), default precision: whole process "
          "wall time, peak RSS (VmHWM) of every process\n")
    print("| venv | model given as | run | wall s | embedded | main process MB | other processes (role MB) | "
          "max of any process MB | export child | int8 quantization | torch imported |")
    print("|---|---|---|---:|---:|---:|---|---:|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['venv']} | {r['model']} | {r['run']} | {r['wall']:.1f} | FAILED | | | | | | "
                  f"{r['error'].splitlines()[-1]} |")
            continue
        kids = ", ".join(f"{role} {mb}" for role, mb in r["children"]) or "none"
        print(f"| {r['venv']} | {r['model']} | {r['run']} | {r['wall']:.1f} | {r.get('embedded')} | {r['main_mb']} | "
              f"{kids} | {r['peak_any_mb']} | {yn(r['exported'])} | {yn(r['quantized'])} | "
              f"{yn(r['torch_imported'])} |")
    print()
    for key in sorted({(r["venv"], r["model"]) for r in rows}):
        runs = [r for r in rows if (r["venv"], r["model"]) == key and "error" not in r]
        if len(runs) >= 2:
            what = "export + int8 quantization" if runs[0]["exported"] else "int8 quantization"
            print(f"- {key[0]}, {key[1]}: one-time cost ({what}, 1st run - 2nd run) ≈ "
                  f"{runs[0]['wall'] - runs[1]['wall']:.1f} s of wall time; steady-state peak of any process "
                  f"{runs[1]['peak_any_mb']} MB")


# -- main --------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=HERE.parent,
                    help="the checkout measured (default: the one this script lives in)")
    ap.add_argument("--before", type=Path, help="a checkout from before the change, measured the same way")
    ap.add_argument("--python", default="python3", help="the Python of the venvs (install.sh --python; default "
                    "python3)")
    ap.add_argument("--rclip-python", help="a Python >= 3.12: build rclip 4.0.8's venv and picseek's default venv "
                    "with it, side by side")
    ap.add_argument("--torch-python", default=sys.executable,
                    help="a Python with torch + transformers that builds and exports the random CLIP (default: "
                    "this one)")
    ap.add_argument("--installs", type=int, default=2,
                    help="installs per configuration, each into a new folder; the last is quoted (default 2)")
    ap.add_argument("--searches", type=int, default=5, help="timed cold searches per library (default 5)")
    ap.add_argument("--work", type=Path, default=HERE.parent / "bench-out" / "light-install",
                    help="venvs, libraries, caches and the models (kept between runs) live here "
                    "(default bench-out/light-install)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: install, builtin, clip")
    ap.add_argument("--keep", action="store_true", help="keep every venv (default: only the last of each)")
    ap.add_argument("--bpe", help=f"path of open_clip's {base.BPE_NAME} (default: from the open_clip wheel)")
    ap.add_argument("--make-photos", type=Path, default=base.DEFAULT_MAKE_PHOTOS,
                    help="make_photos.py, used where scikit-image is missing")
    ap.add_argument("--out", type=Path, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    source = args.source.resolve()
    before = args.before.resolve() if args.before else None
    work = args.work.resolve()
    run_dir = work / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    venvs = run_dir / "venvs"
    venvs.mkdir(parents=True)
    t_start = time.perf_counter()

    name, flags = cpu()
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    git = subprocess.run(["git", "-C", str(source), "log", "-1", "--format=%h %cs"], capture_output=True,
                         text=True).stdout.strip()
    git_before = subprocess.run(["git", "-C", str(before), "log", "-1", "--format=%h %cs"], capture_output=True,
                                text=True).stdout.strip() if before else None
    results: dict = {"date": dt.datetime.now().isoformat(sep=" ", timespec="seconds"), "cpu": name, "flags": flags,
                     "nproc": os.cpu_count(), "mem_gb": round(mem_gb, 1), "source": f"{source} ({git})",
                     "before": f"{before} ({git_before})" if before else None,
                     "command": " ".join([sys.executable, *sys.argv]), "load_start": os.getloadavg()[0]}
    print("# picseek light install\n")
    print(f"date {results['date']}; {name}; CPU flags: {flags}; nproc {os.cpu_count()}; {results['mem_gb']} GiB RAM; "
          f"benchmark Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f}")
    print(f"measured: {results['source']}" + (f"; before: {results['before']}" if before else ""))
    print(f"command: {results['command']}")
    sys.stdout.flush()

    # -- 1. installs
    configs = [("new-default", "picseek", source, args.python, ""),
               ("new-server", "picseek", source, args.python, "server")]
    if before:
        configs += [("before-default", "picseek", before, args.python, ""),
                    ("before-server", "picseek", before, args.python, "server")]
    if args.rclip_python:
        configs += [("new-default-py312", "picseek", source, args.rclip_python, ""),
                    ("rclip-4.0.8", "rclip", None, args.rclip_python, "")]
    installs = []
    if "install" not in skip:
        for label, kind, src, py, extras in configs:
            installs.append(bench_install(label, kind, src, py, extras, venvs, args.installs, args.keep))
        print_installs(installs, args.installs)
        sys.stdout.flush()
    results["installs"] = installs
    venv_of = {r["label"]: Path(r["venv"]) for r in installs if "error" not in r}
    for label in ("new-default", "before-default"):  # parts 2-3 need these even with --skip install
        if label not in venv_of and (label == "new-default" or before) and ("builtin" not in skip or
                                                                            "clip" not in skip):
            r = bench_install(label, "picseek", source if label.startswith("new") else before, args.python, "",
                              venvs, 1, False)
            if "error" not in r:
                venv_of[label] = Path(r["venv"])

    photos = work / "photos"
    n_photos = make_photos(photos, args.make_photos)
    results["photos"] = {"folder": str(photos), "count": n_photos}
    searches, indexes = [], []
    sides = [("new", venv_of.get("new-default"))] + ([("before", venv_of.get("before-default"))] if before else [])

    # -- 2. builtin library
    if "builtin" not in skip:
        for side, venv in sides:
            if venv is None:
                continue
            env = clean_env({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                             "PICSEEK_CACHE_DIR": str(run_dir / f"cache-{side}-builtin"),
                             "PICSEEK_CONFIG": str(run_dir / "no-config.toml"), "HF_HOME": str(run_dir / "hf")})
            lib = run_dir / f"lib-{side}-builtin"
            first = bench_index(venv, lib, "builtin", photos, env)
            log(f"{side} builtin index (fills the caches): {first['wall']:.1f} s {first.get('error', '')}")
            results.setdefault("builtin_index", {})[side] = first
            if "error" in first:
                searches.append({"venv": side, "model": "builtin", **first})
                continue
            res = bench_search(venv, lib, env, args.searches)
            searches.append({"venv": side, "model": "builtin", **res})
            log(f"{side} builtin search: {res.get('median', float('nan')):.2f} s {res.get('error', '')}")

    # -- 3. ONNX CLIP library
    if "clip" not in skip:
        hf, immich, export_s = ensure_models(work, source, args.torch_python, args.bpe)
        results["models"] = {"hf": str(hf), "immich": str(immich), "export_s": round(export_s, 1),
                             "immich_mb": round(du_mb(immich)), "hf_mb": round(du_mb(hf))}
        runs = [("new", "immich folder", immich)]
        if before:
            runs += [("before", "HF folder (exports)", hf), ("before", "immich folder", immich)]
        for side, label, model in runs:
            venv = dict(sides).get(side)
            if venv is None:
                continue
            tag = f"{side}-{'hf' if model == hf else 'immich'}"
            env = clean_env({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                             "PICSEEK_CACHE_DIR": str(run_dir / f"cache-{tag}"),
                             "PICSEEK_CONFIG": str(run_dir / "no-config.toml"), "HF_HOME": str(run_dir / "hf")})
            plan = [("1st, empty cache", ()), ("2nd, new library", ())]
            if side == "new":
                plan.append(("3rd, new library, --precision fp32", ("--precision", "fp32")))
            for i, (run, extra) in enumerate(plan):
                res = bench_index(venv, run_dir / f"lib-{tag}-{i + 1}", str(model), photos, env, extra)
                indexes.append({"venv": side, "model": label, "run": run, **res})
                log(f"{side} {label} index {run}: {res['wall']:.1f} s, peak {res['peak_any_mb']} MB "
                    f"{res.get('error', '')}")
                if "error" in res:
                    break
            if "error" in indexes[-1]:
                searches.append({"venv": side, "model": label, "error": indexes[-1]["error"]})
                continue
            res = bench_search(venv, run_dir / f"lib-{tag}-2", env, args.searches)
            searches.append({"venv": side, "model": label, **res})
            log(f"{side} {label} search: {res.get('median', float('nan')):.2f} s {res.get('error', '')}")
    results["searches"], results["indexes"] = searches, indexes

    if searches:
        print_searches(searches, args.searches)
    if indexes:
        print_indexes(indexes, n_photos)
        m = results["models"]
        print(f"\nModel: {m['hf']} ({m['hf_mb']} MB, Hugging Face format); {m['immich']} ({m['immich_mb']} MB, "
              f"immich's layout, exported with torch by this script"
              + (f" in {m['export_s']:.0f} s)" if m["export_s"] else ", cached from an earlier run)"))
    print("\n## Commands\n")
    for r in installs:
        print(f"- install {r['label']}: `{r['cmd']}`")
    for r in indexes[:1] + [x for x in indexes if x["venv"] == "before"][:1]:
        print(f"- index: `{r['cmd']}`")
    for r in searches[:1]:
        print(f"- search: `{r.get('cmd')}`")
    print(f"- environment: HF_HUB_OFFLINE=1, PICSEEK_CACHE_DIR per venv and model under {run_dir}")
    print(f"\nphotos: {n_photos} JPEGs in {photos}; total run {time.perf_counter() - t_start:.0f} s; load average "
          f"at start / end: {results['load_start']:.2f} / {os.getloadavg()[0]:.2f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
        print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
