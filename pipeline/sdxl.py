"""Stable Diffusion XL (diffusers) as a Denoiser: two text encoders, the pooled embedding and the size time ids.

The engine blends one (L, D) tensor per prompt, so an SDXL prompt embedding packs everything the UNet needs into one:
rows 0..76 are both encoders' penultimate hidden states side by side (77, 768 + 1280), row 77 holds the second
encoder's pooled, projected embedding (zero-padded to D). Prompt blending (lerp/slerp row by row) therefore blends
the pooled embedding along with the tokens. The time ids (original size, crop (0, 0), target size) follow the
latent size of each call, as diffusers' default does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.devices import channels_last_default, default_dtype, resolve_device
from pipeline.protocol import PREDICTION_TYPES
from pipeline.sd import SDModel, _alphas_cumprod_from_config, _checkpoint_kind, _load_vae, _pick_defaults, _vae_scale
from pipeline.sd_files import read_json, resolve_local, weights_variant

TOKENS = 77  # CLIP's context length: rows of the token part of an SDXL embedding


class SDXLModel(SDModel):
    """A diffusers SDXL text-to-image checkpoint (sdxl-turbo, SDXL base + LCM-LoRA) speaking the Denoiser protocol."""

    def __init__(self, *, text_encoder_2: torch.nn.Module, tokenizer_2: Any, force_zeros_for_empty_prompt: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text_encoder_2, self.tokenizer_2 = text_encoder_2, tokenizer_2
        self.force_zeros_for_empty_prompt = force_zeros_for_empty_prompt
        self.pooled_dim = int(text_encoder_2.config.projection_dim)
        width = int(self.unet.config.cross_attention_dim)
        if self.pooled_dim > width:
            raise ValueError(f"pooled embedding ({self.pooled_dim}) wider than the token embedding ({width})")

    def __repr__(self) -> str:
        return super().__repr__().replace("SDModel(", "SDXLModel(", 1)

    @torch.no_grad()
    def encode_prompt(self, text: str) -> torch.Tensor:
        """(78, D): both encoders' penultimate hidden states (77, D) and the pooled embedding (row 77, zero-padded)."""
        hidden, pooled = [], None
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            ids = tokenizer(text, padding="max_length", max_length=TOKENS, truncation=True,
                            return_tensors="pt").input_ids.to(self.device)
            out = encoder(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2][0])  # (77, d_i): SDXL conditions on the penultimate layer
            pooled = out[0][0]  # the last encoder's projected text embedding (d_pool,)
        emb = torch.cat(hidden, dim=-1)  # (77, D)
        row = torch.zeros_like(emb[:1])
        row[0, : self.pooled_dim] = pooled
        emb = torch.cat([emb, row])  # (78, D)
        if text == "" and self.force_zeros_for_empty_prompt:  # SDXL's unconditional embedding is all zeros
            emb = torch.zeros_like(emb)
        return emb.to(self.dtype)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """UNet output for latents x (B,C,h,w), t (B,) and packed SDXL embeddings cond (B, 78, D)."""
        batch = x.shape[0]
        t = torch.as_tensor(t)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,) or cond.ndim != 3 or cond.shape[:2] != (batch, TOKENS + 1):
            raise ValueError(
                f"expected x (B,C,h,w), t (B,) and SDXL embeddings (B,{TOKENS + 1},D) from encode_prompt; got x "
                f"{tuple(x.shape)}, t {tuple(t.shape)}, cond {tuple(cond.shape)}"
            )
        sample = x.to(self.device, self.dtype)
        if self.channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        cond = cond.to(self.device, self.dtype)
        h, w = (int(v) * self.vae_scale for v in x.shape[-2:])
        time_ids = torch.tensor([h, w, 0, 0, h, w], device=self.device, dtype=self.dtype).expand(batch, 6)
        added = {"text_embeds": cond[:, TOKENS, : self.pooled_dim], "time_ids": time_ids}
        out = self._unet_forward(sample, t.to(self.device, torch.float32), encoder_hidden_states=cond[:, :TOKENS],
                                 added_cond_kwargs=added, return_dict=False)[0]
        return out.to(x.device, x.dtype)


def is_sdxl_folder(folder: Path) -> bool:
    """Whether a diffusers folder holds an SDXL pipeline (base, turbo, refiner or inpainting)."""
    class_name = str(read_json(folder / "model_index.json").get("_class_name", ""))
    return "XL" in class_name or (folder / "text_encoder_2").is_dir()


def check_sdxl_folder(folder: Path, name: str) -> None:
    """Raise a teaching error for SDXL variants livekit does not run (refiner, inpainting) or missing parts."""
    index = read_json(folder / "model_index.json")
    unet = read_json(folder / "unet" / "config.json")
    if index.get("requires_aesthetics_score") or not (folder / "text_encoder").is_dir():
        raise ValueError(f"{name!r} is an SDXL refiner (one text encoder, aesthetic-score time ids): livekit runs "
                         f"SDXL text-to-image checkpoints (stabilityai/sdxl-turbo, SDXL base + LCM-LoRA)")
    if "Inpaint" in str(index.get("_class_name", "")) or unet.get("in_channels", 4) != unet.get("out_channels", 4):
        raise ValueError(f"{name!r} is an SDXL inpainting model (UNet in_channels={unet.get('in_channels')}): "
                         f"not supported; use a text-to-image SDXL checkpoint")
    missing = [p for p in ("unet", "vae", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
               if not (folder / p).is_dir()]
    if missing:
        raise ValueError(f"{name!r} ({folder}) has no {', '.join(p + '/' for p in missing)}: not a complete SDXL "
                         f"pipeline; download the whole repository")


def load_sdxl(id_or_path: str | Path, device: str | torch.device = "auto", dtype: torch.dtype | None = None,
              vae: str | Path | None = None, compile: bool = False, channels_last: bool | None = None,
              progress: bool = True, cpu_layers: bool | None = None, **unsupported: Any) -> SDXLModel:
    """Load a diffusers SDXL text-to-image pipeline from a local folder or the local hub cache (never the network)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    if unsupported:
        raise ValueError(
            f"SDXL models take vae=, compile=, channels_last=, cpu_layers=; not {sorted(unsupported)} (yet)")
    name = str(id_or_path)
    dev = resolve_device(device)
    dtype = default_dtype(dev) if dtype is None else dtype
    channels_last = channels_last_default(dev) if channels_last is None else channels_last
    folder = resolve_local(id_or_path, "model")
    check_sdxl_folder(folder, name)
    scheduler_config = read_json(folder / "scheduler" / "scheduler_config.json")
    prediction_type = scheduler_config.get("prediction_type", "epsilon")
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"{name!r}: scheduler prediction_type {prediction_type!r} is not one of {PREDICTION_TYPES}")

    def part(cls: Any, sub: str) -> torch.nn.Module:
        m = cls.from_pretrained(folder / sub, local_files_only=True, variant=weights_variant(folder / sub))
        return torch.nn.Module.to(m, dev, dtype).eval().requires_grad_(False)

    unet = part(UNet2DConditionModel, "unet")
    autoencoder = _load_vae(folder if vae is None else resolve_local(vae, "VAE"), str(vae or name), dtype)
    autoencoder = autoencoder.to(dev).eval().requires_grad_(False)
    if channels_last:
        unet.to(memory_format=torch.channels_last)
        autoencoder.to(memory_format=torch.channels_last)
    sample = unet.config.sample_size
    side = (sample if isinstance(sample, int) else sample[0]) * _vae_scale(autoencoder)
    kind = _checkpoint_kind(name, folder, scheduler_config, None, None)
    return SDXLModel(
        name=name, unet=unet, text_encoder=part(CLIPTextModel, "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True),
        text_encoder_2=part(CLIPTextModelWithProjection, "text_encoder_2"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2", local_files_only=True),
        force_zeros_for_empty_prompt=bool(read_json(folder / "model_index.json").get("force_zeros_for_empty_prompt",
                                                                                       True)),
        vae=autoencoder, alphas_cumprod=_alphas_cumprod_from_config(scheduler_config),
        prediction_type=prediction_type, defaults=_pick_defaults(kind, (side, side)), device=dev, dtype=dtype,
        channels_last=channels_last, compile=compile, cpu_layers=cpu_layers,
    )
