"""StreamDiffusion's stochastic similarity filter for image input (arXiv 2312.12491, section 3.4)."""

from __future__ import annotations

import numpy as np
import torch


class SimilarityFilter:
    """Skip a frame with probability max(0, 1 - (1 - cos) / (1 - threshold)) when the input barely changed."""

    def __init__(self, threshold: float, max_skip_frames: int, rng: np.random.Generator) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"similarity_threshold must be in range (0, 1), got {threshold}")
        if max_skip_frames < 0:
            raise ValueError(f"max_skip_frames must be >= 0, got {max_skip_frames}")
        self.threshold = threshold
        self.max_skip_frames = max_skip_frames
        self._rng = rng
        self._reference: torch.Tensor | None = None
        self._skipped_in_row = 0

    def skip_probability(self, current: torch.Tensor) -> float:
        """Probability of skipping `current` given the last computed input."""
        if self._reference is None:
            return 0.0
        a, b = current.flatten().float(), self._reference.flatten().float()
        cos = float(torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12))
        return max(0.0, 1.0 - (1.0 - cos) / (1.0 - self.threshold))

    def should_skip(self, current: torch.Tensor) -> bool:
        """Decide for this input; a computed input becomes the new reference."""
        p = self.skip_probability(current)
        if self._skipped_in_row < self.max_skip_frames and p > 0 and self._rng.random() < p:
            self._skipped_in_row += 1
            return True
        self.computed(current)
        return False

    def computed(self, current: torch.Tensor) -> None:
        """This input is being computed (whatever the filter says): it becomes the reference."""
        self._reference = current.detach().clone()
        self._skipped_in_row = 0
