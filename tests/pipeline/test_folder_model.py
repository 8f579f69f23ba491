"""A folder of images as a model: file-name words select images, seeds move between them, errors teach."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.folder_model import FolderModel, file_words, load_folder, read_image
from pipeline.noise_schedule import alpha_sigma_at
from pipeline.builtin_text import builtin_encoder
from pipeline.protocol import Denoiser

STEPS = torch.tensor([999.0, 749.0, 499.0, 249.0])


def _picture(colour: tuple[int, int, int], height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8: a soft disc of `colour` on black, placed by the seed."""
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    yy, xx = np.mgrid[0:height, 0:width]
    disc = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (0.3 * min(height, width)) ** 2))[..., None]
    return (disc * np.array(colour)[None, None]).round().astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    Image.fromarray(_picture((230, 20, 30), 120, 160, 1)).save(root / "Crimson_Circles-01.png")
    Image.fromarray(_picture((20, 60, 230), 90, 90, 2)).save(root / "deep ocean.jpg", quality=95)
    Image.fromarray(_picture((30, 220, 40), 200, 100, 3)).save(root / "forest.JPEG", quality=95)
    (root / "readme.txt").write_text("not an image")
    return root


def _sample(model: FolderModel, prompt: str, seeds: list[int], size: tuple[int, int] = (128, 96)) -> torch.Tensor:
    """Deterministic 4-step DDIM (x0 = (x - sigma eps) / alpha, x_next = alpha_n x0 + sigma_n eps) -> images."""
    shape = model.latent_shape(size)
    x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    cond = model.encode_prompt(prompt)[None].expand(len(seeds), -1, -1)
    alpha, sigma = alpha_sigma_at(model.alphas_cumprod, STEPS)
    for i, t in enumerate(STEPS):
        eps = model(x, t.expand(len(seeds)), cond)
        x0 = (x - sigma[i] * eps) / alpha[i]
        x = alpha[i + 1] * x0 + sigma[i + 1] * eps if i + 1 < len(STEPS) else x0
    return model.decode(x)


def test_each_image_is_a_component_tagged_by_its_file_name(folder: Path) -> None:
    model = load_folder(folder)
    assert isinstance(model, Denoiser) and model.name == f"folder:{folder}"
    assert [p.name for p in model.files] == ["Crimson_Circles-01.png", "deep ocean.jpg", "forest.JPEG"]
    assert model.num_components == 3
    assert file_words(folder / "Crimson_Circles-01.png", builtin_encoder()) == ("red", "rings")
    assert {"red", "rings", "deep", "ocean", "forest", "blue", "green"} <= set(model.encoder.tags)


def test_prompts_select_images_by_words_and_colour(folder: Path) -> None:
    model = load_folder(folder)
    seeds = list(range(4))
    for prompt, channel in (("scarlet rings", 0), ("forest", 1), ("ocean", 2), ("blue", 2)):
        mean = _sample(model, prompt, seeds).mean(dim=(0, 2, 3))  # (3,)
        others = torch.cat([mean[:channel], mean[channel + 1 :]])
        assert float(mean[channel]) > float(others.max()) + 0.05, (prompt, mean)


def test_seeds_move_between_images_and_repeat_exactly(folder: Path) -> None:
    model = load_folder(folder)
    frames = _sample(model, "", list(range(8)))
    dominant = frames.mean(dim=(2, 3)).argmax(dim=1)  # the colour each frame shows
    assert len(set(dominant.tolist())) >= 2
    assert torch.equal(frames, _sample(model, "", list(range(8))))  # the same run repeats bit for bit
    torch.testing.assert_close(frames[:2], _sample(model, "", [0, 1]), atol=1e-4, rtol=0)  # batch size aside


def test_unknown_prompt_words_warn_once(folder: Path) -> None:
    model = load_folder(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.encode_prompt("ocean zorblax")
        model.encode_prompt("zorblax")
    assert len(caught) == 1 and "zorblax" in str(caught[0].message) and "ocean" in str(caught[0].message)


def test_bad_folders_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a folder"):
        load_folder(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no .png, .jpg, .webp or .bmp images"):
        load_folder(tmp_path)


def test_images_decode_without_pillow_through_pyav(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_pil = read_image(folder / "Crimson_Circles-01.png")
    monkeypatch.setitem(sys.modules, "PIL", None)  # `from PIL import Image` now raises ImportError
    without = read_image(folder / "Crimson_Circles-01.png")
    assert without.shape == (3, 120, 160) and torch.equal(with_pil, without)
