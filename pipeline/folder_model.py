"""A folder of the performer's own images as a model: each image one component of the closed-form mixture."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.builtin import Components, MixtureConfig, MixtureDenoiser, logit_centre
from pipeline.builtin_content import colour_strengths
from pipeline.builtin_text import COLOUR_TAGS, FILLER_WORDS, LIGHT_TAGS, TagEncoder, builtin_encoder
from pipeline.protocol import ModelDefaults

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FOLDER_DEFAULTS = ModelDefaults(sampler="dpmpp_2m", steps=4, cfg="none", guidance=1.0, size_px=(512, 512))
MAX_SIDE_PX = 512  # images are kept at most this large (uint8) once loaded; enough for 4096 px output latents
VARIATION = 0.8  # smooth colour/shape variation of a photo, relative to the builtin visuals
TAG_LATENT_SIZE = 32  # colour words and the latent centre are measured on the images at this latent size


def read_image(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 RGB of an image file (PNG, JPEG, WebP, BMP), with Pillow when installed, else PyAV."""
    try:
        from PIL import Image
    except ImportError:  # Pillow is optional; PyAV (a livekit dependency) decodes images too
        import av

        with av.open(str(path)) as container:
            array = next(container.decode(video=0)).to_ndarray(format="rgb24")
    else:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _shrink(image: torch.Tensor, max_side: int) -> torch.Tensor:
    """(3, H, W) uint8, area-downscaled so the long side is at most max_side."""
    h, w = image.shape[1:]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = F.interpolate(image[None].float(), size=size, mode="area")[0]
    return small.round().clamp(0, 255).to(torch.uint8)


def cover(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(3, h, w) float in [0, 1]: the image centre-cropped to the aspect of (h, w) and resized (area / bicubic)."""
    src_h, src_w = image.shape[1:]
    scale = max(height / src_h, width / src_w)
    crop_h, crop_w = min(src_h, round(height / scale)), min(src_w, round(width / scale))
    top, left = (src_h - crop_h) // 2, (src_w - crop_w) // 2
    crop = image[:, top : top + crop_h, left : left + crop_w].float()[None] / 255.0
    mode = "area" if crop_h >= height else "bicubic"
    return F.interpolate(crop, size=(height, width), mode=mode).clamp(0, 1)[0]


def file_words(path: Path, encoder: TagEncoder) -> tuple[str, ...]:
    """Tag words of a file name ("Crimson_Circles-02.png" -> ("red", "rings")): builtin synonyms map to their tag."""
    words = []
    for word in re.findall(r"[a-z]+", path.stem.lower()):
        if len(word) < 2 or word in FILLER_WORDS:
            continue
        words.append(encoder.lookup(word) or word)
    return tuple(dict.fromkeys(words))


class FolderModel(MixtureDenoiser):
    """The performer's images as an exact diffusion model: prompts select and blend images by the words in their file
    names (and their colours), seeds and the noise walk move between them."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 config: MixtureConfig = MixtureConfig()) -> None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ValueError(f"folder model: {str(folder)!r} is not a folder; pass a folder of .png/.jpg images")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"folder model: {str(folder)!r} holds no .png, .jpg, .webp or .bmp images; "
                             "put the images to use there")
        self.files = tuple(files)
        self._images = [_shrink(read_image(p), MAX_SIDE_PX) for p in files]  # (3, H, W) uint8 each
        reference_encoder = builtin_encoder()
        words = [file_words(p, reference_encoder) for p in files]
        vocab = tuple(dict.fromkeys(tuple(w for ws in words for w in ws) + COLOUR_TAGS + LIGHT_TAGS))
        hint = "prompt with words of the file names or colours"
        encoder = TagEncoder(vocab, name=f"folder {folder.name!r}", hint=hint)
        reference = self._stack(TAG_LATENT_SIZE, TAG_LATENT_SIZE)  # (K, 3, 32, 32)
        tags = torch.stack([encoder.multi_hot(ws) for ws in words])  # (K, T)
        measured = colour_strengths(reference)  # (K, 13)
        for j, word in enumerate(COLOUR_TAGS + LIGHT_TAGS):
            col = encoder.index[word]
            tags[:, col] = torch.maximum(tags[:, col], measured[:, j])
        super().__init__(f"folder:{folder}", self._render, tags, encoder, config, FOLDER_DEFAULTS, device, dtype,
                         centre=logit_centre(reference, config))

    def _stack(self, height: int, width: int) -> torch.Tensor:
        """(K, 3, h, w) every image covering the latent size."""
        return torch.stack([cover(img, height, width) for img in self._images])

    def _render(self, height: int, width: int) -> Components:
        variation = torch.full((len(self._images), 3), VARIATION, dtype=torch.float64)
        return Components(self._stack(height, width), variation)


def load_folder(path: str | Path, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> FolderModel:
    """A folder of PNG/JPEG images as a model (file-name words are its prompt vocabulary)."""
    return FolderModel(path, device=device, dtype=dtype)
