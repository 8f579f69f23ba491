"""Stable Diffusion 1.x/2.x (diffusers) as a Denoiser: local folders or the local hub cache, LoRA, tiny VAE."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path
from typing import Any

import torch

from pipeline.devices import default_dtype, resolve_device
from pipeline.protocol import PREDICTION_TYPES, ModelDefaults

_TURBO_NAME = re.compile(r"sd(xl)?[-_ ]?turbo", re.IGNORECASE)  # stabilityai/sd-turbo, sdxl-turbo, local copies
_LCM_NAME = re.compile(r"lcm", re.IGNORECASE)  # latent-consistency/lcm-lora-sdv1-5, LCM_Dreamshaper_v7, ...
_LORA_FILES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin")  # what save_lora_weights writes
_ZERO_SNR_FLOOR = 2.0**-24  # terminal alphas_cumprod of a zero-SNR schedule (diffusers' Euler uses the same)


class ModelNotFoundError(ValueError):
    """A model, VAE or LoRA that is neither a local path nor already in the local Hugging Face cache."""


def _looks_like_path(text: str) -> bool:
    """Whether `text` is meant as a filesystem path rather than a hub id like 'owner/name'."""
    return text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1 or Path(text).suffix in (
        ".safetensors", ".bin", ".ckpt", ".pt", ".pth",
    )


def _resolve_local(id_or_path: str | Path, what: str) -> Path:
    """The local folder or file for a path or a cached hub id; never touches the network."""
    path = Path(id_or_path).expanduser()
    if path.exists():
        return path
    text = str(id_or_path)
    if isinstance(id_or_path, Path) or _looks_like_path(text):
        raise ModelNotFoundError(
            f"{what} {text!r} does not exist: pass an existing local path, or a Hugging Face id such as "
            f"'stabilityai/sd-turbo' that is already downloaded"
        )
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(text, local_files_only=True))
    except HFValidationError:
        raise ModelNotFoundError(
            f"{what} {text!r} is neither an existing local path nor a valid Hugging Face id ('owner/name')"
        ) from None
    except OSError:  # LocalEntryNotFoundError: not in the cache, and we never download
        raise ModelNotFoundError(
            f"{what} {text!r} is not a local path and is not in the local Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); livekit never downloads while loading.\n"
            f"To fix it, on a machine with internet run:\n"
            f"    huggingface-cli download {text}\n"
            f"(with the same HF_HOME, or copy that cache folder here), or pass the path of a local folder instead."
        ) from None


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON config as a dict, or {} when the file is missing."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _variant(folder: Path) -> str | None:
    """'fp16' when a component folder holds only fp16-variant weights (e.g. a partial download), else None."""
    names = [p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
    if names and all(".fp16." in n for n in names):
        return "fp16"
    return None


def _alphas_cumprod_from_config(config: dict[str, Any]) -> torch.Tensor:
    """(T,) float64 alphas_cumprod from a diffusers scheduler config (trained_betas or beta_schedule)."""
    steps = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    schedule = config.get("beta_schedule", "linear")
    if config.get("trained_betas") is not None:
        betas = torch.tensor(config["trained_betas"], dtype=torch.float64)
    elif schedule == "linear":
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
    elif schedule == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    elif schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal's cosine schedule, betas capped at 0.999
        bar = [math.cos((i / steps + 0.008) / 1.008 * math.pi / 2) ** 2 for i in range(steps + 1)]
        betas = torch.tensor([min(1 - bar[i + 1] / bar[i], 0.999) for i in range(steps)], dtype=torch.float64)
    else:
        raise ValueError(
            f"beta_schedule {schedule!r} is not supported: expected 'linear', 'scaled_linear', "
            f"'squaredcos_cap_v2' or a trained_betas list in scheduler_config.json"
        )
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    if config.get("rescale_betas_zero_snr", False):  # Lin et al. 2023: shift sqrt(alpha_bar) so the last SNR is 0
        root = alphas_cumprod.sqrt()
        first, last = root[0].clone(), root[-1].clone()
        root = (root - last) * first / (first - last)
        alphas_cumprod = root**2
        alphas_cumprod[-1] = _ZERO_SNR_FLOOR  # keeps log(alpha/sigma) finite at the last timestep
    return alphas_cumprod


def _vae_scale(vae: torch.nn.Module) -> int:
    """Pixels per latent cell of an AutoencoderKL or AutoencoderTiny."""
    config = vae.config
    if "decoder_block_out_channels" in config:  # AutoencoderTiny: one upsample between decoder blocks
        return int(config["upsampling_scaling_factor"]) ** (len(config["decoder_block_out_channels"]) - 1)
    return 2 ** (len(config["block_out_channels"]) - 1)


class SDModel:
    """A diffusers Stable Diffusion 1.x/2.x checkpoint speaking the Denoiser protocol."""

    def __init__(
        self, *, name: str, unet: torch.nn.Module, text_encoder: torch.nn.Module, tokenizer: Any,
        vae: torch.nn.Module, alphas_cumprod: torch.Tensor, prediction_type: str, defaults: ModelDefaults,
        device: torch.device, dtype: torch.dtype, channels_last: bool = False, compile: bool = False,
        lora: str | None = None,
    ) -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.name = name
        self.prediction_type = prediction_type
        self.alphas_cumprod = alphas_cumprod.to(device="cpu", dtype=torch.float64)
        self.device = device
        self.dtype = dtype
        self.defaults = defaults
        self.unet, self.text_encoder, self.tokenizer, self.vae = unet, text_encoder, tokenizer, vae
        self.lora = lora
        self.channels_last = channels_last
        self.vae_scale = _vae_scale(vae)
        self.latent_channels = int(unet.config.in_channels)
        self._latent_scale = float(vae.config.get("scaling_factor", 1.0))
        self._latent_shift = float(vae.config.get("shift_factor", None) or 0.0)
        self._is_tiny_vae = "decoder_block_out_channels" in vae.config
        self._unet_forward = torch.compile(unet) if compile else unet  # compiles on the first call

    def __repr__(self) -> str:
        return (
            f"SDModel({self.name!r}, {self.prediction_type}, {self.device}, {self.dtype}, "
            f"lora={self.lora!r}, vae={type(self.vae).__name__}, defaults={self.defaults})"
        )

    def latent_shape(self, size_px: tuple[int, int]) -> tuple[int, int, int]:
        """(C, h, w) of the latent for an output of size_px = (width, height)."""
        width, height = size_px
        s = self.vae_scale
        if width <= 0 or height <= 0 or width % s or height % s:
            raise ValueError(
                f"size {width}x{height} must be positive multiples of {s} (the VAE downsamples {s}x): "
                f"try {max(s, width // s * s)}x{max(s, height // s * s)}"
            )
        return self.latent_channels, height // s, width // s

    @torch.no_grad()
    def encode_prompt(self, text: str) -> torch.Tensor:
        """CLIP's last hidden state for one prompt: (77, D) on the model's device and dtype ("" = unconditional)."""
        tokens = self.tokenizer(
            text, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        )
        mask = tokens.attention_mask.to(self.device) if getattr(self.text_encoder.config, "use_attention_mask", False) else None
        hidden = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]  # (1, 77, D)
        return hidden[0].to(self.dtype)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """UNet output (epsilon, v or x0 per prediction_type) for latents x (B,C,h,w), float timesteps t (B,), cond (B,L,D)."""
        batch = x.shape[0]
        t = torch.as_tensor(t)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,) or cond.ndim != 3 or cond.shape[0] != batch:
            raise ValueError(
                f"expected x (B,C,h,w), t (B,) and cond (B,L,D) with one B; got x {tuple(x.shape)}, "
                f"t {tuple(t.shape)}, cond {tuple(cond.shape)}"
            )
        sample = x.to(self.device, self.dtype)
        if self.channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        # The UNet embeds timesteps in float32 whatever it gets; fractional t passes through unrounded.
        timesteps = t.to(self.device, torch.float32)
        out = self._unet_forward(sample, timesteps, encoder_hidden_states=cond.to(self.device, self.dtype), return_dict=False)[0]
        return out.to(x.device, x.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B,C,h,w) -> images (B,3,H,W) in [0, 1], on the model's device and dtype."""
        z = latents.to(self.device, self.dtype) / self._latent_scale + self._latent_shift
        if self.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        images = self.vae.decode(z, return_dict=False)[0]  # (B,3,H,W) in [-1, 1]
        return (images / 2 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B,3,H,W) in [0, 1] -> clean latents (B,C,h,w), scaled; the VAE posterior mean (deterministic)."""
        self.latent_shape((images.shape[-1], images.shape[-2]))  # validates the size
        pixels = images.to(self.device, self.dtype) * 2 - 1
        if self._is_tiny_vae:
            z = self.vae.encode(pixels).latents
        else:
            z = self.vae.encode(pixels).latent_dist.mean
        return (z - self._latent_shift) * self._latent_scale


def _check_pipeline_folder(folder: Path, name: str, need_vae: bool) -> None:
    """Raise a teaching error unless `folder` is a diffusers SD 1.x/2.x pipeline."""
    if folder.is_file():
        raise ValueError(
            f"{name!r} is a single file; livekit loads diffusers folders (model_index.json, unet/, vae/, ...). "
            f"Convert it once on a connected machine with diffusers' "
            f"StableDiffusionPipeline.from_single_file(...).save_pretrained(folder) and pass that folder"
        )
    class_name = str(_read_json(folder / "model_index.json").get("_class_name", ""))
    if "XL" in class_name or (folder / "text_encoder_2").is_dir():
        raise ValueError(
            f"{name!r} is an SDXL pipeline ({class_name or 'has text_encoder_2/'}); livekit's SD loader runs "
            f"Stable Diffusion 1.x/2.x (SD 1.5, SD 2.1, sd-turbo): pass one of those"
        )
    parts = ["unet", "text_encoder", "tokenizer", "scheduler"] + (["vae"] if need_vae else [])
    missing = [p for p in parts if not (folder / p).is_dir()]
    if missing:
        raise ModelNotFoundError(
            f"{name!r} ({folder}) has no {', '.join(p + '/' for p in missing)}: it is not a complete diffusers "
            f"Stable Diffusion pipeline. Download the whole repository (huggingface-cli download <id>) or pass a "
            f"folder holding model_index.json, unet/, text_encoder/, tokenizer/, scheduler/ and vae/"
        )


def _load_vae(source: Path, name: str, dtype: torch.dtype) -> torch.nn.Module:
    """An AutoencoderTiny (TAESD) or AutoencoderKL from its own folder or a pipeline folder's vae/."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    folder = source if (source / "config.json").is_file() else source / "vae"
    class_name = _read_json(folder / "config.json").get("_class_name")
    classes = {"AutoencoderTiny": AutoencoderTiny, "AutoencoderKL": AutoencoderKL}
    if class_name not in classes:
        raise ValueError(
            f"VAE {name!r} ({folder}) is {class_name or 'not a diffusers model folder (no config.json)'}; "
            f"expected a diffusers AutoencoderTiny (TAESD, e.g. 'madebyollin/taesd') or AutoencoderKL folder"
        )
    return classes[class_name].from_pretrained(folder, torch_dtype=dtype, local_files_only=True, variant=_variant(folder))


def _lora_weight_file(source: Path, name: str) -> Path:
    """The weights file of a LoRA given as a file or a folder."""
    if source.is_file():
        return source
    for candidate in _LORA_FILES:
        if (source / candidate).is_file():
            return source / candidate
    files = sorted(p for p in source.iterdir() if p.suffix in (".safetensors", ".bin"))
    if len(files) == 1:
        return files[0]
    raise ValueError(
        f"LoRA {name!r} ({source}) holds {len(files)} weight files {[f.name for f in files]}: "
        f"pass the path of the one file to use"
    )


def _fuse_lora(unet: torch.nn.Module, text_encoder: torch.nn.Module, tokenizer: Any, lora: str | Path) -> None:
    """Load a LoRA into the UNet and text encoder (diffusers + peft), fuse it into the weights and drop its layers."""
    if importlib.util.find_spec("peft") is None:
        raise ImportError("loading a LoRA needs peft: pip install peft (or pip install 'livekit-visuals[dev]')")
    from diffusers import StableDiffusionPipeline
    from peft.tuners.tuners_utils import BaseTunerLayer

    weights = _lora_weight_file(_resolve_local(lora, "LoRA"), str(lora))
    host = StableDiffusionPipeline(  # a shell around our modules: diffusers' LoRA loader lives on the pipeline
        vae=None, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=None,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    try:
        host.load_lora_weights(str(weights.parent), weight_name=weights.name, adapter_name="livekit", local_files_only=True)
    except (ValueError, KeyError, RuntimeError) as err:
        raise ValueError(
            f"LoRA {str(lora)!r} ({weights}) does not load into this model: {err}\n"
            f"Is it made for this base model (SD 1.x vs 2.x vs SDXL)?"
        ) from err
    layers = sum(isinstance(m, BaseTunerLayer) for module in (unet, text_encoder) for m in module.modules())
    if layers == 0:
        raise ValueError(
            f"LoRA {str(lora)!r} ({weights}) has no weights for this model's UNet or text encoder: "
            f"is it made for this base model (SD 1.x vs 2.x vs SDXL)?"
        )
    host.fuse_lora(components=["unet", "text_encoder"], lora_scale=1.0)
    host.unload_lora_weights()  # the fused weights stay; the per-call LoRA matmuls go


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """torch.float16 from itself or from "float16" / "fp16" / "half" (and likewise bfloat16, float32)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}
    key = str(dtype).strip().lower().removeprefix("torch.")
    if key not in names:
        raise ValueError(f"dtype {dtype!r} is not supported: use float16, bfloat16 or float32 (or None for the device default)")
    return names[key]


def _pick_defaults(kind: str, size_px: tuple[int, int]) -> ModelDefaults:
    """Sampling defaults for a turbo, lcm or ordinary (non-distilled) checkpoint."""
    if kind == "turbo":  # adversarially distilled for one step, trained without guidance
        return ModelDefaults(sampler="turbo", steps=1, cfg="none", guidance=1.0, size_px=size_px)
    if kind == "lcm":  # consistency-distilled: 4 steps is the LCM paper's quality point; guidance is baked in
        return ModelDefaults(sampler="lcm", steps=4, cfg="none", guidance=1.0, size_px=size_px)
    # Ordinary checkpoints: DPM-Solver++(2M) is close to converged at 10 steps (DPM-Solver++ paper, guided SD);
    # 20 would double the slots (stream latency and batch). Self-negative RCFG guides at no extra model call;
    # 1.4 is StreamDiffusion's RCFG scale (a starting point: tune on real weights).
    return ModelDefaults(sampler="dpmpp_2m", steps=10, cfg="self", guidance=1.4, size_px=size_px)


def load_sd(
    id_or_path: str | Path, device: str | torch.device = "auto", dtype: torch.dtype | str | None = None,
    vae: str | Path | None = None, lora: str | Path | None = None, compile: bool = False,
    channels_last: bool | None = None, progress: bool = True, *, lcm_lora: bool | None = None,
) -> SDModel:
    """Load a diffusers SD 1.x/2.x pipeline from a local folder or the local hub cache (never the network).

    vae: a tiny autoencoder (TAESD / AutoencoderTiny) or other VAE used instead of the checkpoint's own.
    lora: a LoRA file, folder or cached id, fused into the weights; lcm_lora says whether it is an LCM-LoRA
    (None: yes when its name contains "lcm"). channels_last: None = on for CUDA. compile: torch.compile the UNet.
    """
    from diffusers import UNet2DConditionModel
    from tqdm.auto import tqdm
    from transformers import CLIPTextModel, CLIPTokenizer

    name = str(id_or_path)
    dev = resolve_device(device)
    dtype = default_dtype(dev) if dtype is None else _as_dtype(dtype)
    channels_last = dev.type == "cuda" if channels_last is None else channels_last
    folder = _resolve_local(id_or_path, "model")
    _check_pipeline_folder(folder, name, need_vae=vae is None)
    scheduler_config = _read_json(folder / "scheduler" / "scheduler_config.json")
    prediction_type = scheduler_config.get("prediction_type", "epsilon")
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"{name!r}: scheduler prediction_type {prediction_type!r} is not one of {PREDICTION_TYPES}")

    parts = ["tokenizer", "text_encoder", "unet", "vae"] + (["lora"] if lora is not None else [])
    loaded: dict[str, Any] = {}
    with tqdm(total=len(parts), desc=f"Loading {name}", unit="part", disable=not progress) as bar:
        for part in parts:
            bar.set_postfix_str(part if part != "vae" or vae is None else f"vae {vae}")
            if part == "tokenizer":
                loaded[part] = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
            elif part == "text_encoder":
                sub = folder / "text_encoder"
                encoder = CLIPTextModel.from_pretrained(sub, local_files_only=True, variant=_variant(sub))
                loaded[part] = encoder.to(dev, dtype).eval().requires_grad_(False)
            elif part == "unet":
                sub = folder / "unet"
                unet = UNet2DConditionModel.from_pretrained(sub, torch_dtype=dtype, local_files_only=True, variant=_variant(sub))
                loaded[part] = unet.to(dev).eval().requires_grad_(False)  # already in dtype
            elif part == "vae":
                source = folder if vae is None else _resolve_local(vae, "VAE")
                autoencoder = _load_vae(source, name if vae is None else str(vae), dtype)
                loaded[part] = autoencoder.to(dev).eval().requires_grad_(False)
            else:
                _fuse_lora(loaded["unet"], loaded["text_encoder"], loaded["tokenizer"], lora)
            bar.update(1)
    unet, text_encoder, autoencoder = loaded["unet"], loaded["text_encoder"], loaded["vae"]

    if unet.config.in_channels != unet.config.out_channels or unet.config.get("addition_embed_type"):
        raise ValueError(
            f"{name!r} is not a plain text-to-image UNet (in_channels={unet.config.in_channels}, "
            f"addition_embed_type={unet.config.get('addition_embed_type')}): inpainting, depth and SDXL UNets are not supported"
        )
    if unet.config.cross_attention_dim != text_encoder.config.hidden_size:
        raise ValueError(
            f"{name!r}: the UNet expects {unet.config.cross_attention_dim}-wide text embeddings but the text encoder "
            f"gives {text_encoder.config.hidden_size}: the folder mixes components of different models"
        )
    if autoencoder.config.latent_channels != unet.config.in_channels:
        raise ValueError(
            f"VAE {str(vae or name)!r} has {autoencoder.config.latent_channels} latent channels but the UNet of "
            f"{name!r} has {unet.config.in_channels}: use the tiny VAE made for this family ('madebyollin/taesd' for SD 1.x/2.x)"
        )
    if channels_last:
        unet.to(memory_format=torch.channels_last)
        autoencoder.to(memory_format=torch.channels_last)

    # Names that say what the checkpoint is: the id or folder name, the hub repo a cached snapshot belongs to
    # (models--stabilityai--sd-turbo/snapshots/<hash>), and the _name_or_path its configs were saved with.
    saved = [_read_json(folder / "model_index.json"), _read_json(folder / "unet" / "config.json")]
    hints = [Path(name).name, folder.name, folder.parent.parent.name if folder.parent.name == "snapshots" else ""]
    hints += [str(config.get("_name_or_path", "")) for config in saved]
    lora_names = "/".join(Path(str(lora)).parts[-2:]) if lora is not None else ""  # e.g. lcm-lora-sdv1-5/x.safetensors
    is_lcm_lora = lora is not None and (lcm_lora if lcm_lora is not None else bool(_LCM_NAME.search(lora_names)))
    if is_lcm_lora or scheduler_config.get("_class_name") == "LCMScheduler":
        kind = "lcm"
    elif any(_TURBO_NAME.search(h) for h in hints):
        kind = "turbo"
    else:
        kind = "full"
    sample = unet.config.sample_size
    height, width = (sample, sample) if isinstance(sample, int) else tuple(sample)
    scale = _vae_scale(autoencoder)
    return SDModel(
        name=name, unet=unet, text_encoder=text_encoder, tokenizer=loaded["tokenizer"], vae=autoencoder,
        alphas_cumprod=_alphas_cumprod_from_config(scheduler_config), prediction_type=prediction_type,
        defaults=_pick_defaults(kind, (width * scale, height * scale)), device=dev, dtype=dtype,
        channels_last=channels_last, compile=compile, lora=None if lora is None else str(lora),
    )
