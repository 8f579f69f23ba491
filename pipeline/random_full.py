"""Full-size SD architectures with random weights (no download): sd-turbo (SD 2.1), sd15 and sdxl-turbo.

The configs are the published ones written out; modules are built on the meta device and filled with seeded random
weights in one pass (much faster than the layers' own initialisers), so `livekit bench` times a real model anywhere.
Random weights give noise pictures; the cost per call is what counts.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch

# The VAE of SD 1.x/2.x and SDXL (83.7M parameters); only the latent scaling differs.
_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
    sample_size=512,
)
_SD_UNET = dict(  # the SD 1.x/2.x UNet (about 860M parameters)
    sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, norm_num_groups=32,
)
CLIP_L = dict(  # OpenAI CLIP ViT-L/14 text tower: SD 1.x and SDXL's first encoder (123M)
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, hidden_act="quick_gelu",
    projection_dim=768,
)
OPENCLIP_H = dict(  # OpenCLIP ViT-H/14 text tower without its last layer, as SD 2.x ships it (340M)
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16, hidden_act="gelu",
    projection_dim=512,
)
OPENCLIP_BIGG = dict(  # OpenCLIP ViT-bigG/14 text tower with projection: SDXL's second encoder (695M)
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, hidden_act="gelu",
    projection_dim=1280,
)

# preset -> (UNet config, text encoder configs, VAE scaling factor, scheduler prediction type, folder-name hint)
FULL_PRESETS: dict[str, dict[str, Any]] = {
    "sd-turbo": dict(
        unet={**_SD_UNET, "attention_head_dim": (5, 10, 20, 20), "cross_attention_dim": 1024,
              "use_linear_projection": True},
        text=(OPENCLIP_H,), vae_scale=0.18215, kind="turbo",
    ),
    "sd15": dict(
        unet={**_SD_UNET, "attention_head_dim": 8, "cross_attention_dim": 768},
        text=(CLIP_L,), vae_scale=0.18215, kind="full",
    ),
    "sdxl-turbo": dict(
        unet=dict(
            sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=32,
            attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        ),
        text=(CLIP_L, OPENCLIP_BIGG), vae_scale=0.13025, kind="turbo",
    ),
}
CLIP_VOCAB = 49408  # the real CLIP vocabulary size (our byte-level tokenizer uses its first 514 ids)


def _text_config(spec: dict[str, Any], eos_id: int) -> Any:
    """A CLIPTextConfig of the real width and depth, with our tokenizer's special ids."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=CLIP_VOCAB, max_position_embeddings=77, bos_token_id=eos_id - 1,
                          eos_token_id=eos_id, pad_token_id=eos_id, **spec)


def build_modules(preset: str, device: str | torch.device = "meta", eos_id: int = 513) -> dict[str, torch.nn.Module]:
    """The preset's UNet, VAE and text encoder(s) on `device`, weights not initialised ("meta": no memory)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    if preset not in FULL_PRESETS:
        raise ValueError(f"full-size preset must be one of {tuple(FULL_PRESETS)}, got {preset!r}")
    p = FULL_PRESETS[preset]
    with torch.device("meta"):
        parts: dict[str, torch.nn.Module] = {
            "unet": UNet2DConditionModel(**p["unet"]),
            "vae": AutoencoderKL(**_VAE, scaling_factor=p["vae_scale"]),
        }
        for i, spec in enumerate(p["text"]):
            cls = CLIPTextModelWithProjection if i == 1 else CLIPTextModel  # SDXL's second encoder is projected
            parts["text_encoder" if i == 0 else "text_encoder_2"] = cls(_text_config(spec, eos_id))
    if torch.device(device).type != "meta":
        for module in parts.values():
            _materialise(module, device)
    return parts


def parameter_count(module: torch.nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def _materialise(module: torch.nn.Module, device: str | torch.device, seed: int = 0) -> None:
    """Allocate a meta-built module on `device` and fill it: norms 1/0, biases 0, weights N(0, 1/fan_in)."""
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)  # drawn where the weights live: fast on a GPU
    module.to_empty(device=device)
    for name, sub in module.named_modules():
        for pname, param in sub.named_parameters(recurse=False):
            if isinstance(sub, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and pname == "weight":
                param.fill_(1.0)
            elif pname == "bias" or param.ndim == 0:
                param.zero_()
            else:
                fan_in = max(1, param[0].numel()) if param.ndim > 1 else param.numel()
                std = 0.02 if isinstance(sub, torch.nn.Embedding) else 1.0 / math.sqrt(fan_in)
                param.normal_(0.0, std, generator=gen)
        for bname, buf in sub.named_buffers(recurse=False):
            if bname == "position_ids":  # CLIP's text embeddings: 0..L-1
                buf.copy_(torch.arange(buf.shape[-1]).expand_as(buf))
            else:
                raise RuntimeError(f"no fill rule for buffer {name}.{bname} of {type(module).__name__}")
    module.eval().requires_grad_(False)


def _random_taesd(device: str | torch.device) -> torch.nn.Module:
    """TAESD's architecture (AutoencoderTiny, 2.4M parameters) with random weights."""
    from diffusers import AutoencoderTiny

    with torch.device("meta"):
        vae = AutoencoderTiny(scaling_factor=1.0)  # TAESD works on the model's scaled latents directly
    _materialise(vae, device)
    return vae


def load_random_full(preset: str, device: str | torch.device = "auto", dtype: torch.dtype | None = None,
                     compile: bool = False, channels_last: bool | None = None, vae: str | None = None,
                     progress: bool = True, cpu_layers: bool | None = None, **unsupported: Any) -> Any:
    """A full-size random-weight SD or SDXL model as a Denoiser, built in memory.

    vae: None (the real VAE architecture) or "taesd" (the tiny autoencoder's architecture, random weights)."""
    from transformers import CLIPTokenizer

    from pipeline.devices import channels_last_default, default_dtype, resolve_device
    from pipeline.random_sd import write_clip_tokenizer
    from pipeline.sd import SDModel, _alphas_cumprod_from_config, _pick_defaults

    if unsupported:
        raise ValueError(f"random-sd:{preset} takes vae=None|'taesd', compile, channels_last, cpu_layers; "
                         f"not {sorted(unsupported)}")
    if vae not in (None, "taesd"):
        raise ValueError(f"random-sd:{preset} takes vae=None (its own VAE) or 'taesd' (random TAESD), got {vae!r}")
    dev = resolve_device(device)
    dt = dtype or default_dtype(dev)
    tok_dir = Path(tempfile.gettempdir()) / "livekit-clip-bytes-tokenizer"
    vocab = write_clip_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    parts = build_modules(preset, device=dev, eos_id=vocab - 1)
    if vae == "taesd":
        parts["vae"] = _random_taesd(dev)
    channels_last = channels_last_default(dev) if channels_last is None else channels_last
    for name, module in parts.items():  # nn.Module.to: diffusers' own .to warns about casting, pointlessly here
        torch.nn.Module.to(module, dev, dt)
        if channels_last and not name.startswith("text"):
            module.to(memory_format=torch.channels_last)
    schedule = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    model_class, extra = SDModel, {}
    if "text_encoder_2" in parts:  # SDXL: the second encoder shares the byte-level tokenizer
        from pipeline.sdxl import SDXLModel

        model_class, extra = SDXLModel, {"text_encoder_2": parts["text_encoder_2"], "tokenizer_2": tokenizer}
    return model_class(
        **extra,
        name=f"random-sd:{preset}", unet=parts["unet"], text_encoder=parts["text_encoder"], tokenizer=tokenizer,
        vae=parts["vae"], alphas_cumprod=_alphas_cumprod_from_config(schedule), prediction_type="epsilon",
        defaults=_pick_defaults(FULL_PRESETS[preset]["kind"], (512, 512)), device=dev, dtype=dt,
        channels_last=channels_last, compile=compile, cpu_layers=cpu_layers,
    )
