#!/usr/bin/env bash
# Install picseek: the one set of install steps that CI (.ci/run), the container (Dockerfile) and people use.
#
#   bash scripts/install.sh --venv .venv                           # a user: picseek with the built-in model
#   bash scripts/install.sh --venv .venv --extras dev --editable   # a developer: everything the tests need
#   bash scripts/install.sh --venv /opt/picseek --extras server    # the container image
#   bash scripts/install.sh --apt-only                             # CI: the Debian packages the tests drive
#
# Run it from anywhere; it installs the checkout it lives in. Safe to run again: an existing virtual environment is
# reused and Debian packages that are already installed are skipped.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/install.sh [options]
  --venv DIR          create DIR as a virtual environment if missing and install into it
                      (default: the environment of the python3 on PATH)
  --python PY         the Python that creates the virtual environment (default: python3)
  --extras LIST       comma-separated extras of picseek, e.g. server (the web API), torch (model conversion,
                      training, BLIP re-ranking: the CPU build of torch is installed first) or dev (all the
                      tests need)
  --editable          install the checkout in editable (development) mode
  --apt               also install the Debian packages the tests drive (chromium nginx openjdk-17-jre-headless npm),
                      with sudo when not root; packages already installed are skipped (npm too where Node.js
                      brings its own)
  --apt-only          only install those Debian packages
  --gpu               run models on an NVIDIA GPU (picseek index --device cuda): onnxruntime-gpu (CUDA 12 and cuDNN 9
                      from its own pip dependencies) in place of onnxruntime, which shares its module name
  --torch-index URL   where an extra needs torch, the index it comes from, e.g. https://download.pytorch.org/whl/cpu
                      (default: pip's configured index; env PICSEEK_TORCH_INDEX)
  --dry-run           print the commands instead of running them
  -h, --help          this help
EOF
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# picseek itself needs no torch. The extras that do (TORCH_EXTRAS: tests/unit/test_dependencies.py keeps this list
# equal to pyproject.toml's) get the one torch version the project is tested with, installed on its own before
# picseek: torch from plain PyPI on Linux is the CUDA build, which pulls several GB of NVIDIA libraries that a CPU
# machine never uses. Asking for the pinned CPU build first (from --torch-index where the default index has no CPU
# build) means pip finds the extra's `torch>=2.2,<3` already satisfied and never fetches the CUDA one.
TORCH="torch==2.13.0"
ORT_GPU="onnxruntime-gpu>=1.20,<2"  # --gpu: the CUDA build of the onnxruntime requirement in pyproject.toml
TORCH_EXTRAS=(torch dev)
# npm: installs axe-core for the accessibility tests (.ci/run: npm ci --prefix tests/browser).
APT_PACKAGES=(chromium nginx openjdk-17-jre-headless npm)
VENV="" PYTHON="python3" EXTRAS="" EDITABLE=0 APT=0 PY_INSTALL=1 DRY=0 GPU=0
TORCH_INDEX="${PICSEEK_TORCH_INDEX:-}"

while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="${2:?--venv needs a folder}"; shift 2 ;;
    --python) PYTHON="${2:?--python needs a program}"; shift 2 ;;
    --extras) EXTRAS="${2?--extras needs a list}"; shift 2 ;;
    --editable) EDITABLE=1; shift ;;
    --apt) APT=1; shift ;;
    --apt-only) APT=1; PY_INSTALL=0; shift ;;
    --gpu) GPU=1; shift ;;
    --torch-index) TORCH_INDEX="${2:?--torch-index needs a URL}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
if ! [[ "$EXTRAS" =~ ^[a-z0-9,_-]*$ ]]; then
  echo "install.sh: --extras takes names separated by commas, e.g. server or dev" >&2; exit 2
fi

run() {
  echo "+ $*" >&2
  if [ "$DRY" -eq 0 ]; then "$@"; fi
}

apt_install() {
  if ! command -v dpkg-query >/dev/null; then
    echo "install.sh: --apt needs a Debian-based system (install ${APT_PACKAGES[*]} yourself)" >&2; exit 1
  fi
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    if [ "$pkg" = npm ] && command -v npm >/dev/null; then continue; fi  # (Node.js from elsewhere brings its own)
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "install.sh: Debian packages already installed: ${APT_PACKAGES[*]}" >&2; return
  fi
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  run "${sudo[@]}" apt-get update -q
  run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

needs_torch() {
  local extra wanted
  for extra in ${EXTRAS//,/ }; do
    for wanted in "${TORCH_EXTRAS[@]}"; do [ "$extra" != "$wanted" ] || return 0; done
  done
  return 1
}

python_install() {
  local py="$PYTHON"
  if [ -n "$VENV" ]; then
    if [ ! -x "$VENV/bin/python" ]; then run "$PYTHON" -m venv "$VENV"; fi
    py="$VENV/bin/python"
  fi
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  if needs_torch; then
    local torch_from=()
    [ -z "$TORCH_INDEX" ] || torch_from=(--index-url "$TORCH_INDEX")
    run "$py" -m pip install -q "${torch_from[@]}" "$TORCH"
  fi
  local target="$ROOT"
  [ -z "$EXTRAS" ] || target="$ROOT[$EXTRAS]"
  if [ "$EDITABLE" -eq 1 ]; then
    run "$py" -m pip install -q -e "$target"
  else
    run "$py" -m pip install -q "$target"
  fi
  if [ "$GPU" -eq 1 ]; then  # after picseek, whose onnxruntime requirement would otherwise bring the CPU build back
    run "$py" -m pip uninstall -q -y onnxruntime
    run "$py" -m pip install -q "$ORT_GPU"
  fi
  if [ "$DRY" -eq 0 ]; then "$py" -m picseek.cli --version >&2; fi
}

if [ "$APT" -eq 1 ]; then apt_install; fi
if [ "$PY_INSTALL" -eq 1 ]; then python_install; fi
