"""Stable Diffusion 1.x/2.x (diffusers) as a Denoiser: local folders or the local hub cache, LoRA, tiny VAE."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path
from typing import Any

import torch

from pipeline.cpu_layers import use_cpu_layers
from pipeline.devices import channels_last_default, default_dtype, resolve_device
from pipeline.protocol import PREDICTION_TYPES, ModelDefaults
from pipeline.schedule import SchedulerSettings
from pipeline.sd_files import check_pipeline_folder, lora_weight_file, read_json, resolve_local, weights_variant

_TURBO_NAME = re.compile(r"sd(xl)?[-_ ]?turbo", re.IGNORECASE)  # stabilityai/sd-turbo, sdxl-turbo, local copies
_LCM_NAME = re.compile(r"lcm", re.IGNORECASE)  # latent-consistency/lcm-lora-sdv1-5, LCM_Dreamshaper_v7, ...
_PREFIXED_LORA_KEYS = ("unet.", "text_encoder.", "lora_unet", "lora_te")  # diffusers and kohya layouts
_ZERO_SNR_FLOOR = 2.0**-24  # terminal alphas_cumprod of a zero-SNR schedule (diffusers' Euler uses the same)


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
        lora: str | None = None, scheduler_settings: SchedulerSettings | None = None, cpu_layers: bool | None = None,
    ) -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.name = name
        self.prediction_type = prediction_type
        self.alphas_cumprod = alphas_cumprod.to(device="cpu", dtype=torch.float64)
        self.device = device
        self.dtype = dtype
        self.defaults = defaults
        self.scheduler_settings = scheduler_settings or SchedulerSettings()  # the checkpoint's scheduler config
        self.unet, self.text_encoder, self.tokenizer, self.vae = unet, text_encoder, tokenizer, vae
        self.lora = lora
        self.channels_last = channels_last
        self.vae_scale = _vae_scale(vae)
        self.latent_channels = int(unet.config.in_channels)
        self._latent_scale = float(vae.config.get("scaling_factor", 1.0))
        self._latent_shift = float(vae.config.get("shift_factor", None) or 0.0)
        self._is_tiny_vae = "decoder_block_out_channels" in vae.config
        # oneDNN-friendly layers (pipeline.cpu_layers); None: on for the CPU unless compiled (inductor packs its own)
        self.cpu_layers = device.type == "cpu" and not compile if cpu_layers is None else cpu_layers
        if self.cpu_layers:
            use_cpu_layers(unet)
            use_cpu_layers(vae)
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
        use_mask = getattr(self.text_encoder.config, "use_attention_mask", False)  # as diffusers' SD pipeline does
        mask = tokens.attention_mask.to(self.device) if use_mask else None
        hidden = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]  # (1, 77, D)
        return hidden[0].to(self.dtype)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """UNet output (epsilon, v or x0, see prediction_type) for latents x (B,C,h,w), t (B,) and cond (B,L,D)."""
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
        cond = cond.to(self.device, self.dtype)
        out = self._unet_forward(sample, timesteps, encoder_hidden_states=cond, return_dict=False)[0]  # (B,C,h,w)
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


def _load_vae(source: Path, name: str, dtype: torch.dtype) -> torch.nn.Module:
    """An AutoencoderTiny (TAESD) or AutoencoderKL from its own folder or a pipeline folder's vae/."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    folder = source if (source / "config.json").is_file() else source / "vae"
    class_name = read_json(folder / "config.json").get("_class_name")
    classes = {"AutoencoderTiny": AutoencoderTiny, "AutoencoderKL": AutoencoderKL}
    if class_name not in classes:
        raise ValueError(
            f"VAE {name!r} ({folder}) is {class_name or 'not a diffusers model folder (no config.json)'}; "
            f"expected a diffusers AutoencoderTiny (TAESD, e.g. 'madebyollin/taesd') or AutoencoderKL folder"
        )
    model_class = classes[class_name]
    variant = weights_variant(folder)
    return model_class.from_pretrained(folder, torch_dtype=dtype, local_files_only=True, variant=variant)


def _is_bare_peft_file(weights: Path) -> bool:
    """Whether a .safetensors LoRA holds a bare peft state dict of the UNet (no diffusers/kohya key prefixes)."""
    if weights.suffix != ".safetensors":
        return False
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        return not any(key.startswith(_PREFIXED_LORA_KEYS) for key in f.keys())


def _fuse_lora(unet: torch.nn.Module, text_encoder: torch.nn.Module, tokenizer: Any, weights: Path, name: str) -> None:
    """Load a LoRA into the UNet and text encoder (diffusers + peft), fuse it into the weights and drop its layers."""
    from diffusers import StableDiffusionPipeline
    from peft.tuners.tuners_utils import BaseTunerLayer
    from safetensors.torch import load_file

    host = StableDiffusionPipeline(  # a shell around our modules: diffusers' LoRA loader lives on the pipeline
        vae=None, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=None,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    hint = "is it made for this base model (SD 1.x vs 2.x vs SDXL)?"
    try:
        if _is_bare_peft_file(weights):  # peft's save_pretrained: adapter_model.safetensors + adapter_config.json
            state = {k.removeprefix("base_model.model."): v for k, v in load_file(str(weights)).items()}
            config = read_json(weights.parent / "adapter_config.json") or None  # carries lora_alpha
            unet.load_lora_adapter(state, prefix=None, adapter_name="livekit", metadata=config)
        else:  # diffusers' save_lora_weights layout; kohya / A1111 files are converted by diffusers
            host.load_lora_weights(
                str(weights.parent), weight_name=weights.name, adapter_name="livekit", local_files_only=True
            )
    except (ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"LoRA {name!r} ({weights}) does not load into this model: {err}\n{hint}") from err
    if not any(isinstance(m, BaseTunerLayer) for module in (unet, text_encoder) for m in module.modules()):
        raise ValueError(f"LoRA {name!r} ({weights}) has no weights for this model's UNet or text encoder: {hint}")
    host.fuse_lora(components=["unet", "text_encoder"], lora_scale=1.0)
    host.unload_lora_weights()  # the fused weights stay; the per-call LoRA matmuls go


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


def _checkpoint_kind(name: str, folder: Path, scheduler_config: dict[str, Any], lora: str | Path | None,
                     lcm_lora: bool | None) -> str:
    """'lcm', 'turbo' or 'full' (not distilled), from the LoRA, the scheduler class and the checkpoint's names."""
    if lora is not None:
        lcm_lora = bool(_LCM_NAME.search("/".join(Path(str(lora)).parts[-2:]))) if lcm_lora is None else lcm_lora
    if lcm_lora or scheduler_config.get("_class_name") == "LCMScheduler":
        return "lcm"
    # The id or folder name, the hub repo of a cached snapshot (models--stabilityai--sd-turbo/snapshots/<hash>),
    # and the _name_or_path the configs were saved with.
    hints = [Path(name).name, folder.name, folder.parent.parent.name if folder.parent.name == "snapshots" else ""]
    hints += [str(read_json(folder / f).get("_name_or_path", "")) for f in ("model_index.json", "unet/config.json")]
    return "turbo" if any(_TURBO_NAME.search(h) for h in hints) else "full"


def _check_components(name: str, unet: Any, text_encoder: Any, autoencoder: Any, vae_name: str) -> None:
    """Raise a teaching error when the loaded parts cannot work together as SD 1.x/2.x text-to-image."""
    if unet.config.in_channels != unet.config.out_channels or unet.config.get("addition_embed_type"):
        raise ValueError(
            f"{name!r} is not a plain text-to-image UNet (in_channels={unet.config.in_channels}, addition_embed_type="
            f"{unet.config.get('addition_embed_type')}): inpainting, depth and SDXL UNets are not supported"
        )
    if unet.config.cross_attention_dim != text_encoder.config.hidden_size:
        raise ValueError(
            f"{name!r}: the UNet expects {unet.config.cross_attention_dim}-wide text embeddings but the text encoder "
            f"gives {text_encoder.config.hidden_size}: the folder mixes components of different models"
        )
    if autoencoder.config.latent_channels != unet.config.in_channels:
        raise ValueError(
            f"VAE {vae_name!r} has {autoencoder.config.latent_channels} latent channels but the UNet of {name!r} has "
            f"{unet.config.in_channels}: use the tiny VAE made for this family ('madebyollin/taesd' for SD 1.x/2.x)"
        )


def load_sd(
    id_or_path: str | Path, device: str | torch.device = "auto", dtype: torch.dtype | None = None,
    vae: str | Path | None = None, lora: str | Path | None = None, compile: bool = False,
    channels_last: bool | None = None, progress: bool = True, *, lcm_lora: bool | None = None,
    cpu_layers: bool | None = None,
) -> SDModel:
    """Load a diffusers SD 1.x/2.x pipeline from a local folder or the local hub cache (never the network).

    vae: a tiny autoencoder (TAESD / AutoencoderTiny) or other VAE used instead of the checkpoint's own.
    lora: a LoRA file, folder or cached id, fused into the weights; lcm_lora says whether it is an LCM-LoRA
    (None: yes when its name contains "lcm"). channels_last: None = on for CUDA and the CPU. compile: torch.compile
    the UNet (the first call compiles, which takes a while). cpu_layers: pipeline.cpu_layers (None = on for the CPU
    unless compiled).
    """
    from diffusers import UNet2DConditionModel
    from tqdm.auto import tqdm
    from transformers import CLIPTextModel, CLIPTokenizer

    name = str(id_or_path)
    dev = resolve_device(device)
    dtype = default_dtype(dev) if dtype is None else dtype
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float16, or None for the device default; got {dtype!r}")
    channels_last = channels_last_default(dev) if channels_last is None else channels_last
    # Everything that can be wrong with the arguments is found before any weights load.
    folder = resolve_local(id_or_path, "model")
    check_pipeline_folder(folder, name, need_vae=vae is None)
    vae_source = folder if vae is None else resolve_local(vae, "VAE")
    if lora is not None and importlib.util.find_spec("peft") is None:
        raise ImportError("loading a LoRA needs peft: pip install peft (or pip install 'livekit-visuals[dev]')")
    lora_file = None if lora is None else lora_weight_file(resolve_local(lora, "LoRA"), str(lora))
    scheduler_config = read_json(folder / "scheduler" / "scheduler_config.json")
    prediction_type = scheduler_config.get("prediction_type", "epsilon")
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"{name!r}: scheduler prediction_type {prediction_type!r} is not one of {PREDICTION_TYPES}")

    parts = ["tokenizer", "text_encoder", "unet", "vae"] + (["lora"] if lora is not None else [])
    with tqdm(total=len(parts), desc=f"Loading {name}", unit="part", disable=not progress) as bar:
        bar.set_postfix_str("tokenizer")
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
        bar.update(1)
        bar.set_postfix_str("text_encoder")
        sub = folder / "text_encoder"
        text_encoder = CLIPTextModel.from_pretrained(sub, local_files_only=True, variant=weights_variant(sub))
        text_encoder = text_encoder.to(dev, dtype).eval().requires_grad_(False)
        bar.update(1)
        bar.set_postfix_str("unet")
        sub = folder / "unet"
        unet = UNet2DConditionModel.from_pretrained(
            sub, torch_dtype=dtype, local_files_only=True, variant=weights_variant(sub)
        )
        unet = unet.to(dev).eval().requires_grad_(False)
        bar.update(1)
        bar.set_postfix_str("vae" if vae is None else f"vae {vae}")
        autoencoder = _load_vae(vae_source, str(vae or name), dtype).to(dev).eval().requires_grad_(False)
        bar.update(1)
        _check_components(name, unet, text_encoder, autoencoder, str(vae or name))
        if lora_file is not None:
            bar.set_postfix_str(f"lora {lora}")
            _fuse_lora(unet, text_encoder, tokenizer, lora_file, str(lora))
            bar.update(1)
    if channels_last:
        unet.to(memory_format=torch.channels_last)
        autoencoder.to(memory_format=torch.channels_last)

    sample = unet.config.sample_size
    height, width = (sample, sample) if isinstance(sample, int) else tuple(sample)
    scale = _vae_scale(autoencoder)
    kind = _checkpoint_kind(name, folder, scheduler_config, lora, lcm_lora)
    return SDModel(
        name=name, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, vae=autoencoder,
        alphas_cumprod=_alphas_cumprod_from_config(scheduler_config), prediction_type=prediction_type,
        defaults=_pick_defaults(kind, (width * scale, height * scale)), device=dev, dtype=dtype,
        channels_last=channels_last, compile=compile, lora=None if lora is None else str(lora),
        scheduler_settings=SchedulerSettings.from_config(scheduler_config), cpu_layers=cpu_layers,
    )
