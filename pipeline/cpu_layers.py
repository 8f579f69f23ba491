"""oneDNN-friendly layers for CPU inference: the same arithmetic as torch's, laid out so oneDNN runs it faster.

- `PackedConv2d`: a Conv2d whose weight is reordered once into oneDNN's blocked layout (torch's conv reorders it on
  every call: about 5% of an SD UNet call on a 2-core AVX-512 CPU).
- `OneDNNLinear`: a Linear through oneDNN's matmul (faster than MKL's sgemm at the UNet's shapes on this CPU).
- `SubpixelUpsample`: diffusers' Upsample2D (nearest 2x, then a 3x3 conv) as one 2x2 conv with four output phases
  on the low-resolution input: 2.25x fewer multiply-adds, the same sums up to float rounding.

`use_cpu_layers(module)` swaps them into a UNet, VAE or ControlNet (in place); the picture stays within float
tolerance of the plain modules (tests/pipeline/test_cpu_layers.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _fast_path(x: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether oneDNN's inference kernels can take x: a CPU tensor of the layer's dtype and no autograd."""
    return x.device.type == "cpu" and x.dtype == dtype and not (torch.is_grad_enabled() and x.requires_grad)


class PackedConv2d(torch.nn.Module):
    """A Conv2d whose weight oneDNN reorders once, at the first call, for that call's input shape."""

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv  # keeps the dense weight: state_dict, dtype moves and the fallback see the usual module
        self._args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self._packed: torch.Tensor | None = None  # oneDNN layout; not a parameter, so .to() never sees it
        self._packed_from: tuple | None = None  # (storage, dtype) of the weight it was packed from

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv2d(x) with the packed weight (the plain conv off the CPU, with autograd or another dtype)."""
        weight = self.conv.weight
        if not _fast_path(x, weight.dtype):
            return self.conv(x)
        key = (weight.data_ptr(), weight.dtype)  # a .to() moves it; swap the layers in after any in-place change
        if self._packed is None or self._packed_from != key:
            padding, stride, dilation, groups = self._args
            self._packed = torch.ops.mkldnn._reorder_convolution_weight(
                weight.detach(), padding, stride, dilation, groups, list(x.shape))
            self._packed_from = key
        return torch.ops.mkldnn._convolution_pointwise(x, self._packed, self.conv.bias, *self._args, "none", [], "")


class OneDNNLinear(torch.nn.Module):
    """A Linear through oneDNN's matmul (inputs of any leading shape)."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """linear(x)."""
        weight = self.linear.weight
        if not _fast_path(x, weight.dtype):
            return self.linear(x)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, self.linear.bias, "none", [], "")


def _phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(4*O, I, 2, 2) kernels: phase (a, b) of conv3x3(nearest2x(x)) as a 2x2 conv on x padded by 1.

    An output row 2i+a reads input rows i-1+a and i+a: row taps (w0, w1 + w2) for a = 0, (w0 + w1, w2) for a = 1;
    the same for columns. Summed in float64, so the merged taps round once."""
    w = weight.detach().double()
    merge = [w.new_tensor([[1, 0, 0], [0, 1, 1]]), w.new_tensor([[1, 1, 0], [0, 0, 1]])]  # (2 taps, 3 rows)
    phases = [torch.einsum("pr,oirs,qs->oipq", merge[a], w, merge[b]) for a in (0, 1) for b in (0, 1)]
    return torch.cat(phases).to(weight.dtype)  # phase-major: rows [k*O, (k+1)*O) are phase k = 2a + b


class SubpixelUpsample(torch.nn.Module):
    """diffusers' Upsample2D (nearest 2x + 3x3 conv) computed as four phases of a 2x2 conv at the input resolution."""

    def __init__(self, upsample: torch.nn.Module) -> None:
        super().__init__()
        self.upsample = upsample  # the original: used for other output sizes, other devices and autograd
        conv = upsample.conv
        self.out_channels = int(conv.out_channels)
        self.phases = PackedConv2d(torch.nn.Conv2d(conv.in_channels, 4 * self.out_channels, 2,
                                                   bias=conv.bias is not None, device=conv.weight.device,
                                                   dtype=conv.weight.dtype))
        with torch.no_grad():
            self.phases.conv.weight.copy_(_phase_kernels(conv.weight))
            if conv.bias is not None:
                self.phases.conv.bias.copy_(conv.bias.detach().repeat(4))
        if conv.weight.is_contiguous(memory_format=torch.channels_last):
            self.phases.conv.to(memory_format=torch.channels_last)
        self.phases.conv.requires_grad_(False)

    def forward(self, hidden_states: torch.Tensor, output_size: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        """(B, C, H, W) -> (B, O, 2H, 2W), as Upsample2D.forward."""
        x = hidden_states
        b, _, h, w = x.shape
        if (output_size is not None and tuple(output_size) != (2 * h, 2 * w)) or not _fast_path(
                x, self.phases.conv.weight.dtype):
            return self.upsample(hidden_states, output_size, *args, **kwargs)
        y = self.phases(F.pad(x, (1, 1, 1, 1)))  # (B, 4*O, H+1, W+1); phase (a, b) is its window at offset (a, b)
        o = self.out_channels
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        out = torch.empty((b, o, 2 * h, 2 * w), dtype=y.dtype, device=y.device, memory_format=fmt)
        for k, (pa, pb) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            out[:, :, pa::2, pb::2] = y[:, k * o:(k + 1) * o, pa:pa + h, pb:pb + w]
        return out


def _plain_upsample(module: torch.nn.Module) -> bool:
    """An Upsample2D that is exactly nearest 2x + Conv2d(3x3, stride 1, padding 1) (no norm, no transpose)."""
    conv = getattr(module, "conv", None)
    return (type(module).__name__ == "Upsample2D" and getattr(module, "use_conv", False)
            and not getattr(module, "use_conv_transpose", True) and getattr(module, "interpolate", False)
            and getattr(module, "norm", None) is None and type(conv) is torch.nn.Conv2d
            and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def use_cpu_layers(module: torch.nn.Module) -> dict[str, int]:
    """Swap the layers above into `module` in place (CPU inference); returns how many of each were swapped."""
    if not torch.backends.mkldnn.is_available():
        return {}
    counts = {"upsample": 0, "conv": 0, "linear": 0}

    def swap(parent: torch.nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, (PackedConv2d, OneDNNLinear, SubpixelUpsample)):
                continue  # swapped already: a second call (a model rebuilt around the same UNet) changes nothing
            if _plain_upsample(child):
                new, kind = SubpixelUpsample(child), "upsample"
            elif (type(child) is torch.nn.Conv2d and child.padding_mode == "zeros"
                  and not isinstance(child.padding, str)):
                new, kind = PackedConv2d(child), "conv"
            elif type(child) is torch.nn.Linear:
                new, kind = OneDNNLinear(child), "linear"
            else:
                swap(child)
                continue
            setattr(parent, name, new)
            counts[kind] += 1

    swap(module)
    return counts
