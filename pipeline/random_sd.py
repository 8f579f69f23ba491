"""Random-weight Stable Diffusion pipelines built from configs, for tests and benchmarks (no download)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class RandomSDSpec:
    """Architecture of a random-weight SD pipeline (defaults: a tiny one for tests)."""

    unet_channels: tuple[int, ...] = (32, 64)  # UNet block widths; (96, 160, 320) gives 26.6M parameters
    layers_per_block: int = 1  # resnet layers per UNet block
    cross_attention_dim: int = 32  # text embedding width
    attention_head_dim: int = 8  # channels per attention head
    vae_channels: tuple[int, ...] = (8, 8, 16, 16)  # four blocks give SD's 8x downsampling
    text_layers: int = 2  # CLIP text transformer layers
    prediction_type: str = "epsilon"  # or "v_prediction"
    seed: int = 0  # weights are drawn from this seed


SMALL_SD = RandomSDSpec(
    unet_channels=(96, 160, 320), layers_per_block=1, cross_attention_dim=256, attention_head_dim=8,
    vae_channels=(16, 32, 32, 32), text_layers=2,
)


def _byte_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode table (the alphabet of byte-level BPE)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def write_clip_tokenizer(folder: Path) -> int:
    """Write a byte-level CLIP BPE vocabulary (no merges) into `folder`; return the vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_byte_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return len(vocab)


def build_random_sd(path: str | Path, spec: RandomSDSpec = RandomSDSpec()) -> Path:
    """Build a random-weight StableDiffusionPipeline from configs and save_pretrained it to `path`."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = Path(path)
    torch.manual_seed(spec.seed)
    n = len(spec.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=spec.unet_channels,
        layers_per_block=spec.layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=spec.cross_attention_dim,
        attention_head_dim=spec.attention_head_dim,
        norm_num_groups=min(32, spec.unet_channels[0]),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=spec.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * len(spec.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(spec.vae_channels),
        latent_channels=4,
        norm_num_groups=min(spec.vae_channels),
        sample_size=64,
    )
    tok_dir = path / "_tokenizer_src"
    vocab_size = write_clip_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=spec.cross_attention_dim,
            intermediate_size=spec.cross_attention_dim * 2,
            num_hidden_layers=spec.text_layers,
            num_attention_heads=max(1, spec.cross_attention_dim // 16),
            max_position_embeddings=77,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=spec.prediction_type,
    )
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(str(path))
    for f in tok_dir.iterdir():
        f.unlink()
    tok_dir.rmdir()
    return path
