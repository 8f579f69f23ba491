"""Tiny random-weight SDXL pipelines built from configs, for tests (no download)."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.random_sd import write_clip_tokenizer


def build_random_sdxl(path: str | Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """Build a tiny random-weight StableDiffusionXLPipeline (two text encoders, text_time UNet) and save it."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    path = Path(path)
    torch.manual_seed(seed)
    tok_dir = path / "_tokenizer_src"
    vocab = write_clip_tokenizer(tok_dir)
    widths, pooled, time_dim = (16, 32), 24, 8  # encoder widths (token embedding 48 wide), pooled width, time ids

    def text_config(width: int, **extra: int) -> CLIPTextConfig:
        return CLIPTextConfig(vocab_size=vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=3,
                              num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab - 2,
                              eos_token_id=vocab - 1, pad_token_id=vocab - 1, hidden_act="gelu", **extra)

    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=sum(widths), attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + pooled, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 8, 16, 16), latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=64,
        scaling_factor=0.13025,
    )
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(text_config(widths[0])), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(text_config(widths[1], projection_dim=pooled)),
        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.save_pretrained(str(path))
    for f in tok_dir.iterdir():
        f.unlink()
    tok_dir.rmdir()
    return path
