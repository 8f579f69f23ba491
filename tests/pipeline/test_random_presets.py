"""Full-size random-weight architectures: the published parameter counts (on the meta device) and fast init."""

from __future__ import annotations

import pytest
import torch

from pipeline.loading import load_model
from pipeline.random_full import _materialise, build_modules, parameter_count

# Parameter counts of the released checkpoints (stabilityai/sd-turbo, runwayml/stable-diffusion-v1-5,
# stabilityai/sdxl-turbo), component by component.
PUBLISHED = {
    "sd-turbo": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sdxl-turbo": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
                   "text_encoder_2": 694_659_840},
}


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_full_size_presets_have_the_released_parameter_counts_without_allocating(preset: str) -> None:
    parts = build_modules(preset)  # the meta device: no memory, no weights
    assert {k: parameter_count(v) for k, v in parts.items()} == PUBLISHED[preset]
    assert all(p.is_meta for m in parts.values() for p in m.parameters())


def test_materialised_weights_are_finite_seeded_and_clip_positions_are_real() -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77, bos_token_id=512,
                            eos_token_id=513, pad_token_id=513)
    models = []
    for _ in range(2):
        with torch.device("meta"):
            model = CLIPTextModel(config)
        _materialise(model, "cpu", seed=0)
        models.append(model)
    a, b = (dict(m.named_parameters()) for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed, same weights"
    assert all(bool(torch.isfinite(v).all()) for v in a.values())
    tower = getattr(models[0], "text_model", models[0])  # transformers 5 flattened CLIPTextModel
    ln = tower.final_layer_norm
    assert torch.equal(ln.weight, torch.ones(32)) and torch.equal(ln.bias, torch.zeros(32))
    assert torch.equal(tower.embeddings.position_ids[0], torch.arange(77))
    out = models[0](torch.tensor([[512, 5, 6, 513]])).last_hidden_state
    assert bool(torch.isfinite(out).all()) and float(out.std()) > 0.1


def test_unsupported_full_size_requests_fail_clearly() -> None:
    with pytest.raises(ValueError, match="taesd"):
        load_model("random-sd:sd-turbo", device="cpu", vae="madebyollin/taesd")
    with pytest.raises(ValueError, match="lora"):
        load_model("random-sd:sd15", device="cpu", lora="x")
    with pytest.raises(ValueError, match="preset must be one of"):
        load_model("random-sd:sd21", device="cpu")
