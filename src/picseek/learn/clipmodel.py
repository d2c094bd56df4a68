"""The CLIP pieces training needs: a tiny CLIPConfig and a word-level tokenizer for training from scratch, the
image processor config that reads back as the same ImageSpec, layer freezing, and the contrastive loss."""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import UsageError
from ..models.base import ImageSpec

TINY = dict(hidden=64, layers=2, heads=4, projection=64, max_text=32)
MAX_LOGIT_SCALE = math.log(100.0)


def build_tokenizer(captions: list[str], max_length: int):
    """A word-level tokenizer over the captions' words (lower-cased; punctuation split off), with CLIP's
    bos/eos/pad specials, as a PreTrainedTokenizerFast that AutoTokenizer loads from the saved folder."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>"]  # eos id 3: CLIP pools the first eos
    pre = pre_tokenizers.Whitespace()
    words = sorted({w for c in captions for w, _ in pre.pre_tokenize_str(c.lower())})
    vocab = {t: i for i, t in enumerate(specials + words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<|unk|>"))
    tk.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tk.pre_tokenizer = pre
    tk.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 2), ("<|endoftext|>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=specials[2], eos_token=specials[3],
                                   pad_token=specials[0], unk_token=specials[1], model_max_length=max_length,
                                   model_input_names=["input_ids", "attention_mask"])


def tiny_config(tok, image_size: int):
    """A small CLIP: 2 layers of width 64 per tower, 8x8 patches of the image, projection 64."""
    from transformers import CLIPConfig

    if image_size < 16 or image_size % 8:
        raise UsageError(f"--image-size must be a multiple of 8, at least 16 (not {image_size})")
    h = TINY["hidden"]
    common = dict(hidden_size=h, intermediate_size=2 * h, num_hidden_layers=TINY["layers"],
                  num_attention_heads=TINY["heads"])
    return CLIPConfig(text_config=dict(common, vocab_size=len(tok), max_position_embeddings=TINY["max_text"],
                                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                       eos_token_id=tok.eos_token_id),
                      vision_config=dict(common, image_size=image_size, patch_size=image_size // 8),
                      projection_dim=TINY["projection"])


def save_processor(spec: ImageSpec, out: Path) -> None:
    """The image processor config that `hf.image_spec_from_processor` reads back as `spec`."""
    import transformers

    # the Pillow-backed class where transformers has one (the default class wants torchvision); same saved config
    processor = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor

    codes = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}
    s = spec.size
    crop = spec.resize == "shortest_crop"
    processor(size={"shortest_edge": s} if crop else {"height": s, "width": s},
                       crop_size={"height": s, "width": s}, do_center_crop=crop, resample=codes[spec.resample],
                       image_mean=list(spec.mean), image_std=list(spec.std)).save_pretrained(out)


def set_trainable(model, mode: str = "all", freeze_layers: int = 0) -> None:
    """"projection": only visual/text projections and the temperature learn. freeze_layers=N: the embeddings and
    the lowest N transformer layers of both towers are frozen."""
    for p in model.parameters():
        p.requires_grad = mode == "all"
    if mode == "projection":
        for m in (model.visual_projection, model.text_projection):
            for p in m.parameters():
                p.requires_grad = True
        model.logit_scale.requires_grad = True
        return
    for tower in (model.vision_model, model.text_model):
        layers = tower.encoder.layers
        if freeze_layers > len(layers):
            raise UsageError(f"--freeze-layers {freeze_layers}: the model has only {len(layers)} layers per tower")
        frozen = [tower.embeddings, *layers[:freeze_layers]] if freeze_layers else []
        if freeze_layers and hasattr(tower, "pre_layrnorm"):
            frozen.append(tower.pre_layrnorm)
        for m in frozen:
            for p in m.parameters():
                p.requires_grad = False


def features(out):
    import torch

    return out if isinstance(out, torch.Tensor) else out.pooler_output


def clip_loss(model, pixels, text_inputs: dict, caption_id) -> object:
    """Symmetric cross-entropy over the batch's image-caption logits; pairs with equal captions share targets."""
    import torch.nn.functional as F

    img = F.normalize(features(model.get_image_features(pixel_values=pixels)).float(), dim=-1)
    txt = F.normalize(features(model.get_text_features(**text_inputs)).float(), dim=-1)
    logits = model.logit_scale.exp() * txt @ img.T  # captions x images
    same = (caption_id[:, None] == caption_id[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)  # symmetric: rows and columns alike
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def cpu_has_bf16() -> bool:
    """True on CPUs with native bfloat16 arithmetic (avx512_bf16 or AMX); Linux /proc/cpuinfo flags."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
