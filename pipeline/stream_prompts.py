"""The prompt embeddings a stream conditions on: each prompt encoded once, the weighted mix kept while it holds."""

from __future__ import annotations

import torch

from pipeline.blending import blend_embeddings
from pipeline.conditioning import Conditioning
from pipeline.protocol import Denoiser

_CACHE_SIZE = 256  # prompts kept


class PromptEmbeddings:
    """Encodes prompts with the model (cached, oldest dropped first) and blends the weighted mix of a Conditioning."""

    def __init__(self, model: Denoiser) -> None:
        self.model = model
        self._cache: dict[str, torch.Tensor] = {}
        self._mix: tuple[tuple | None, torch.Tensor | None] = (None, None)  # ((prompts, blend), embedding)

    def embed(self, text: str) -> torch.Tensor:
        """(L, D) embedding of one prompt on the model's device and dtype."""
        emb = self._cache.get(text)
        if emb is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            with torch.inference_mode():
                emb = self.model.encode_prompt(text).to(self.model.device, self.model.dtype)
            self._cache[text] = emb
        return emb

    def mix(self, cond: Conditioning) -> torch.Tensor:
        """(L, D) blend of the weighted prompts (recomputed only when the mix changes)."""
        key = (cond.prompts, cond.prompt_blend)
        if self._mix[0] != key:
            emb = blend_embeddings([self.embed(p) for p, _ in cond.prompts], [w for _, w in cond.prompts],
                                   cond.prompt_blend)
            self._mix = (key, emb)
        return self._mix[1]
