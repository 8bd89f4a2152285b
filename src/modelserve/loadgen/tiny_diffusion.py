"""A tiny random-weight Stable Diffusion pipeline, saved as a normal diffusers directory.

No weights can be downloaded here, so tests and the images benchmark build one from diffusers'
and transformers' own classes. The server then loads the directory exactly as it would a real
Stable Diffusion checkpoint; only the images are noise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# CLIP's byte-level alphabet: every byte maps to one printable unicode character.
_BYTE_RANGES = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                *range(ord("®"), ord("ÿ") + 1)]


def _byte_alphabet() -> list[str]:
    chars = list(_BYTE_RANGES)
    extra = 0
    for b in range(256):
        if b not in _BYTE_RANGES:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def write_tokenizer_files(directory: Path) -> Path:
    """vocab.json + merges.txt for a character-level CLIP tokenizer (no merges)."""
    directory.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return directory


def build_tiny_pipeline(directory: Path, *, seed: int = 0, width: int = 8,
                        scheduler: str = "euler") -> Path:
    """Build and `save_pretrained` a tiny StableDiffusionPipeline into `directory`.

    `width` scales the UNet and VAE channels: 8 gives a ~1 MB model that makes a 64x64 image in
    a few milliseconds; larger widths make a generation slow enough to benchmark.
    The VAE has four blocks so that, as in real Stable Diffusion, latents are 1/8 of the image.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(width, width * 2), layers_per_block=1, sample_size=8,
        in_channels=4, out_channels=4, norm_num_groups=min(width, 4),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=2)
    vae = AutoencoderKL(
        block_out_channels=[4, 4, 4, 4], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        norm_num_groups=2, sample_size=64)
    vocab = write_tokenizer_files(directory / "_tokenizer_src")
    # A local directory: from_pretrained only reads (and converts) the two files.
    tokenizer = CLIPTokenizer.from_pretrained(str(vocab), model_max_length=77,
                                              local_files_only=True)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    text_encoder = CLIPTextModel(text_config)
    common: dict[str, Any] = {"beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1,
                              "beta_schedule": "scaled_linear"}
    sched = (DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **common)
             if scheduler == "ddim" else EulerDiscreteScheduler(**common))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=sched,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(directory))
    for leftover in (vocab / "vocab.json", vocab / "merges.txt"):
        leftover.unlink()
    vocab.rmdir()
    return directory


if __name__ == "__main__":  # python -m modelserve.loadgen.tiny_diffusion DIR [WIDTH]
    import sys

    out = build_tiny_pipeline(Path(sys.argv[1]),
                              width=int(sys.argv[2]) if len(sys.argv) > 2 else 8)
    print(out)
