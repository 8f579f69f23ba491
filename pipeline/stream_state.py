"""What a StreamEngine keeps between steps besides its slots: its counters and the buffers a step writes."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import torch


@dataclass
class EngineStats:
    """What the engine did: frames computed or skipped, model calls and their batch sizes."""

    computed: int = 0  # frames produced by a model call
    skipped: int = 0  # frames answered by the similarity filter / static skip
    model_calls: int = 0  # every model call, prefill included
    prefill_calls: int = 0  # model calls spent refilling the stream
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1000))  # of the latest calls

    @property
    def last_batch_size(self) -> int:
        """Batch size of the latest model call (0 before the first)."""
        return self.batch_sizes[-1] if self.batch_sizes else 0


class StepBuffers(NamedTuple):
    """Views of the two tensors a stream step writes: the next batch (N + 1, C, h, w), where the shift is the
    layout (row 0 enters, rows 1..N-1 move on, row N leaves), and the history of u = alpha x0 (N + 1, C, h, w),
    whose row 0 stays zero (a frame entering slot 0 has no history) and whose rows 1..N take this step's u."""

    entry: torch.Tensor  # (1, C, h, w) batch row 0: the frame entering slot 0
    advanced: torch.Tensor  # (N, C, h, w) batch rows 1..N: every slot advanced one step
    x: torch.Tensor  # (N, C, h, w) batch rows 0..N-1: the next step's slot latents
    out: torch.Tensor  # (1, C, h, w) batch row N: the finished frame
    u: torch.Tensor  # (N, C, h, w) history rows 1..N: this step's u of every slot
    u_prev: torch.Tensor  # (N, C, h, w) history rows 0..N-1: the u each frame of the next step had

    @classmethod
    def like(cls, x: torch.Tensor) -> "StepBuffers":
        """Zeroed buffers for slot latents shaped like x (N, C, h, w)."""
        batch, history = (x.new_zeros((x.shape[0] + 1, *x.shape[1:])) for _ in "bh")
        return cls(batch[:1], batch[1:], batch[:-1], batch[-1:], history[1:], history[:-1])
