"""Tiny random-weight text-image models in Hugging Face format, built offline for tests.

Each `make_tiny_*` writes a complete model folder (config + weights, image processor config, tokenizer) the
way `save_pretrained` does for a real checkpoint, so the loader under test takes exactly the code path a
downloaded model takes. Nothing here touches the network: the tokenizers are built in memory from a small
vocabulary.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

# A small English vocabulary: enough for test captions to tokenize into real (non-unknown) words.
WORDS = ("a an the of on in with and photo picture image cat cats dog dogs bird car red green blue yellow "
         "black white cup coffee tea table tree sky sea beach mountain city street person people man woman "
         "child house flower food plate boat train snow night day sun water grass field river book computer "
         "phone chair").split()

_TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=16)
_VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, patch_size=8)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable character table (the alphabet of a byte-level BPE vocabulary)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def _clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary in CLIP's layout: bytes, bytes + </w>, merges for WORDS, the specials."""
    alphabet = list(_bytes_to_unicode().values())
    vocab = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    for word in WORDS:  # merge each word left to right: c a -> ca, ca t</w> -> cat</w>
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            merged = pair[0] + pair[1]
            if pair not in merges:
                merges.append(pair)
            if merged not in vocab:
                vocab.append(merged)
            pieces = [merged] + pieces[2:]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab)}, merges


def make_tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """A 2-layer CLIP (hidden 32, 32 px images, projection 16) with a byte-level BPE tokenizer -> `folder`."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = _clip_vocab()
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=_TEXT["max_position_embeddings"])
    bos, eos = tok.bos_token_id, tok.eos_token_id
    # eos_token_id tells CLIP's text model where to pool (the first eos of each row): it must be our eos id.
    config = CLIPConfig(text_config=dict(_TEXT, vocab_size=len(vocab), bos_token_id=bos, eos_token_id=eos,
                                         pad_token_id=tok.pad_token_id),
                        vision_config=dict(_VISION, image_size=32), projection_dim=16)
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _unigram_tokenizer(eos: str = "</s>", unk: str = "<unk>", lowercase: bool = False) -> Tokenizer:
    """A SentencePiece-style Unigram tokenizer (metaspace, '▁' word prefix, eos appended) from WORDS.

    SigLIP ships a SentencePiece model (spiece.model) that needs the sentencepiece package to load or build;
    the tokenizers library builds the same kind of tokenizer with no extra package and no training data.
    """
    pieces = [(eos, 0.0), (unk, 0.0)]
    pieces += [("▁" + w, -2.0) for w in WORDS]
    pieces += [("▁", -4.0)]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-"]
    tk = Tokenizer(models.Unigram(pieces, unk_id=1, byte_fallback=False))
    norms = [normalizers.Replace("  ", " "), normalizers.Strip()]
    tk.normalizer = normalizers.Sequence(([normalizers.Lowercase()] if lowercase else []) + norms)
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tk.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                      special_tokens=[(eos, 0)])
    return tk


def _save_siglip_tokenizer(out: Path, max_length: int) -> int:
    """Save a PreTrainedTokenizerFast that behaves like SigLIP's (eos appended, eos is also the pad).

    Returns the vocabulary size."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=_unigram_tokenizer(), eos_token="</s>", pad_token="</s>",
                                  unk_token="<unk>", model_max_length=max_length,
                                  model_input_names=["input_ids"])
    tok.save_pretrained(out)
    return tok.backend_tokenizer.get_vocab_size()


def make_tiny_siglip(folder: str | Path, seed: int = 0) -> Path:
    """A 2-layer SigLIP (hidden 32 = embedding dim, 32 px images), saved to `folder` with a Unigram tokenizer.

    Like the real checkpoints: the image processor squashes to size x size (bicubic, mean/std 0.5), and the
    tokenizer returns input_ids only (SigLIP's text tower was trained with no attention mask, padded to max
    length).
    """
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    n_vocab = _save_siglip_tokenizer(out, _TEXT["max_position_embeddings"])
    config = SiglipConfig(text_config=dict(_TEXT, vocab_size=n_vocab, pad_token_id=0, eos_token_id=0,
                                           bos_token_id=None),
                          vision_config=dict(_VISION, image_size=32))
    torch.manual_seed(seed)
    SiglipModel(config).save_pretrained(out)
    SiglipImageProcessor(size={"height": 32, "width": 32}, resample=3).save_pretrained(out)
    return out


def _gemma_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A Gemma-style ('▁' for spaces, BPE) vocabulary for WORDS: specials, single characters, word merges."""
    vocab = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "▁", *"abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    merges: list[tuple[str, str]] = []
    for word in WORDS:  # ▁ c -> ▁c, ▁c a -> ▁ca, ...
        pieces = ["▁"] + list(word)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            if pair not in merges:
                merges.append(pair)
            if pair[0] + pair[1] not in vocab:
                vocab.append(pair[0] + pair[1])
            pieces = [pair[0] + pair[1]] + pieces[2:]
    return {t: i for i, t in enumerate(vocab)}, merges


def make_tiny_siglip2(folder: str | Path, seed: int = 0) -> Path:
    """A 2-layer SigLIP 2 NaFlex model (patch 8, at most 16 patches = a 32 px square) and its tokenizer."""
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Tokenizer

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = _gemma_vocab()
    tok = Siglip2Tokenizer(vocab=vocab, merges=merges, model_max_length=_TEXT["max_position_embeddings"])
    tok.save_pretrained(out)
    config = Siglip2Config(text_config=dict(_TEXT, vocab_size=len(vocab), pad_token_id=tok.pad_token_id,
                                            eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id),
                           vision_config=dict(_VISION, num_patches=16))
    torch.manual_seed(seed)
    Siglip2Model(config).save_pretrained(out)
    Siglip2ImageProcessor(patch_size=8, max_num_patches=16, resample=2).save_pretrained(out)
    return out


def make_tiny_blip_itm(folder: str | Path, seed: int = 0) -> Path:
    """A 2-layer BLIP image-text matching model (BlipForImageTextRetrieval: ViT 32 px, BERT text encoder with
    cross-attention, ITM head) with a WordPiece tokenizer over WORDS, as `save_pretrained` writes it.

    BLIP's vision tower is initialised near zero by default (every image would look the same): the tiny model
    uses a wider initialiser so that different images get different scores."""
    from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz.,!?'-"]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizer(str(out / "vocab.txt"), do_lower_case=True, model_max_length=_TEXT["max_position_embeddings"])
    tok.save_pretrained(out)
    config = BlipConfig(text_config=dict(_TEXT, vocab_size=len(vocab), encoder_hidden_size=_VISION["hidden_size"],
                                         pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
                                         sep_token_id=tok.sep_token_id, eos_token_id=tok.sep_token_id,
                                         initializer_range=0.2),
                        vision_config=dict(_VISION, image_size=32, initializer_range=0.2),
                        projection_dim=16, image_text_hidden_size=16)
    torch.manual_seed(seed)
    BlipForImageTextRetrieval(config).save_pretrained(out)
    BlipImageProcessor(size={"height": 32, "width": 32}, resample=3).save_pretrained(out)
    return out


def make_tiny_dinov2(folder: str | Path, seed: int = 0) -> Path:
    """A 2-layer DINOv2 (hidden 32, patch 8, 32 px crop of a 36 px shortest side) with the image processor config
    the real checkpoints ship (BitImageProcessor: shortest edge, centre crop, ImageNet mean/std, bicubic)."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, patch_size=8,
                          image_size=32, initializer_range=0.2)
    torch.manual_seed(seed)
    Dinov2Model(config).save_pretrained(out)
    BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}, resample=3,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                      do_convert_rgb=True).save_pretrained(out)
    return out


def put_in_hub_cache(cache: str | Path, folder: str | Path, repo: str,
                     commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Copy a model folder into a Hugging Face hub cache as a download of `repo` leaves it (refs/main ->
    snapshots/<commit>/...), so a name that means that repo loads it with no network. Returns the snapshot."""
    import shutil

    repo_dir = Path(cache) / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot
