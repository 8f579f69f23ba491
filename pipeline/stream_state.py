"""What a StreamEngine keeps between steps besides its slots: its counters and the buffers a step writes."""

from __future__ import annotations

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
    last_batch_size: int = 0  # batch size of the latest model call
    batch_sizes: list[int] = field(default_factory=list)  # batch size of every call (bounded)


class StepBuffers(NamedTuple):
    """Views of the two tensors a stream step writes: the next batch (N + 1, C, h, w), where the shift is the
    layout (row 0 enters, rows 1..N-1 move on, row N leaves), and the x0 history (N + 1, C, h, w), whose row 0 stays
    zero (a frame entering slot 0 has no history) and whose rows 1..N take this step's x0."""

    entry: torch.Tensor  # (C, h, w) batch row 0: the frame entering slot 0
    advanced: torch.Tensor  # (N, C, h, w) batch rows 1..N: every slot advanced one step
    x: torch.Tensor  # (N, C, h, w) batch rows 0..N-1: the next step's slot latents
    out: torch.Tensor  # (1, C, h, w) batch row N: the finished frame
    x0: torch.Tensor  # (N, C, h, w) history rows 1..N: this step's x0 of every slot
    x0_prev: torch.Tensor  # (N, C, h, w) history rows 0..N-1: the x0 each frame of the next step had

    @classmethod
    def like(cls, x: torch.Tensor) -> "StepBuffers":
        """Zeroed buffers for slot latents shaped like x (N, C, h, w)."""
        batch, history = (x.new_zeros((x.shape[0] + 1, *x.shape[1:])) for _ in "bh")
        return cls(batch[0], batch[1:], batch[:-1], batch[-1:], history[1:], history[:-1])
