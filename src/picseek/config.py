"""Settings, declared once: name, default, help. Read from (highest first) an explicit value, the environment
(PICSEEK_<NAME>), a TOML file (PICSEEK_CONFIG or <user config dir>/picseek/config.toml), then the default."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import UsageError


def boolean(raw: Any) -> bool:
    """A yes/no setting: true/false, yes/no, on/off, 1/0 (any case), or a TOML boolean."""
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


boolean.__name__ = "yes/no value"


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    type: type = str


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    Setting("library", None, "library folder (default: <user data dir>/picseek/library)"),
    Setting("store", None, "where vectors and metadata live: empty for the built-in store in the library folder, "
            "chroma://HOST:PORT/COLLECTION (a ChromaDB server) or chroma:///PATH?collection=NAME (an embedded "
            "ChromaDB folder); see docs/deployment.md"),
    Setting("model", "auto", "model for a new library: auto, builtin, clip-vit-b-32, hf:ORG/NAME, onnx:ORG/NAME or a "
            "folder"),
    Setting("precision", "auto", "what runs CLIP-family models: auto (int8 ONNX Runtime where available, else fp32; "
            "fp16 on a GPU), fp32 (torch, the reference), bf16 (torch bfloat16 weights; fast only on CPUs with "
            "native bf16), int8, or fp16 (a GPU)"),
    Setting("runtime", "auto", "what runs a ready-ONNX CLIP model's int8 image tower on the CPU: auto (openvino "
            "where the openvino extra is installed, else onnxruntime), onnxruntime, or openvino (pip install "
            "'picseek[openvino]': OpenVINO int8 calibrated once on the first photos an index run embeds, 1.2-1.3x "
            "the model's images/s on AVX-512 VNNI CPUs)"),
    Setting("device", "cpu", "where the model embeds images while indexing: cpu, or cuda / cuda:N (a GPU through "
            "ONNX Runtime's CUDA provider, from the onnxruntime-gpu package, or torch for torch models)"),
    Setting("workers", None, "decode worker processes while indexing (default: one per CPU core)", int),
    Setting("batch_size", 16, "images per model batch while indexing (on a GPU the default is 128)", int),
    Setting("follow_links", False, "also index (and serve) files and folders behind symbolic links that lead outside "
            "the indexed folders; links that stay inside them are always followed", boolean),
    Setting("max_image_pixels", 250_000_000, "larger images are refused as possible decompression bombs", int),
    Setting("url_max_bytes", 50_000_000, "largest image fetched from a URL (a query image or a URL list), in bytes",
            int),
    Setting("url_timeout", 15.0, "timeout in seconds for fetching an image from a URL (connect, and between reads)",
            float),
    Setting("download_concurrency", 8, "downloads at a time for picseek index --from-list", int),
    Setting("cache_dir", None, "cache folder for derived data such as class embeddings (default: user cache)"),
    Setting("keyword_weight", 0.5, "weight of the keyword ranking (file names, descriptions, tags) against the vector "
            "ranking in reciprocal rank fusion; 0 turns keyword matching off", float),
    Setting("watch_debounce", 1.0, "picseek watch and serve --watch: seconds without new file events before a batch "
            "of changes is indexed", float),
    Setting("watch_rescan", 600.0, "picseek watch and serve --watch: seconds between full re-scans of the watched "
            "folders, the safety net for events that never arrive (network mounts); 0 = never", float),
    Setting("ann_threshold", 100_000, "spaces with at least this many vectors are searched through an approximate "
            "index (FAISS IVF, recall@10 >= 0.95) when a search has no filter or a broad one; 0 = always exact", int),
    Setting("ann_pq_threshold", 2_000_000, "spaces with at least this many vectors keep their approximate index as "
            "PQ codes (64 bytes per vector instead of a float16 copy; candidates re-scored exactly from the vector "
            "cache); 0 = never", int),
]}


def default(name: str) -> Any:
    """A setting's declared default: what a function's own default for the same value takes (one copy, here)."""
    return SETTINGS[name].default


def env_name(name: str) -> str:
    return "PICSEEK_" + name.upper()


def config_file() -> Path:
    return _config_file(os.environ.get("PICSEEK_CONFIG") or "")


@lru_cache(maxsize=8)
def _config_file(explicit: str) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("picseek")) / "config.toml"


@lru_cache(maxsize=8)
def _file_values(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        return {}
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {p}: {exc}") from exc


_DECLARED = object()


def get(name: str, value: Any = None, fallback: Any = _DECLARED) -> Any:
    """The effective value of a setting; `value` (e.g. a CLI option) wins when it is not None. `fallback`: what
    stands in for the declared default where nothing set the setting (a default that depends on another one)."""
    setting = SETTINGS[name]
    if value is not None:
        return value
    raw = os.environ.get(env_name(name))
    source = env_name(name)
    if raw is None:
        raw = _file_values(str(config_file())).get(name)
        source = f"{config_file()} [{name}]"
    if raw is None or raw == "":
        return setting.default if fallback is _DECLARED else fallback
    try:
        return setting.type(raw)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{source}: {raw!r} is not a valid {setting.type.__name__} for {name}") from exc


def default_library_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("picseek")) / "library"


def library_path(value: str | os.PathLike | None = None) -> Path:
    chosen = get("library", value)
    return Path(chosen).expanduser() if chosen else default_library_path()


def command_for(library: str | os.PathLike, args: str, store: str | None = None) -> str:
    """A picseek command line for hints: with --library (quoted) unless `library` is the one used without it, and
    with --store where `store` (a store URL) is not the one used without it."""
    import shlex

    path = Path(library).expanduser().resolve()
    where = "" if path == library_path(None).expanduser().resolve() else f"--library {shlex.quote(str(library))} "
    if store and store != (get("store") or ""):
        where += f"--store {shlex.quote(store)} "
    return f"picseek {where}{args}"


def cache_dir() -> Path:
    chosen = get("cache_dir")
    if chosen:
        return Path(chosen).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("picseek"))
