"""pipeline.cpu_layers: oneDNN-friendly layers give the plain layers' results up to float rounding."""

from __future__ import annotations

import copy

import pytest
import torch

from pipeline.cpu_layers import OneDNNLinear, PackedConv2d, SubpixelUpsample, use_cpu_layers

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(2, 8, 12, 10), (1, 8, 7, 9)])
def test_subpixel_upsample_equals_nearest_upsample_then_conv(channels_last: bool, shape: tuple[int, ...]) -> None:
    from diffusers.models.upsampling import Upsample2D

    torch.manual_seed(0)
    plain = Upsample2D(8, use_conv=True, out_channels=6).eval()
    x = torch.randn(shape, generator=_gen(1))
    if channels_last:
        plain.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    fast = SubpixelUpsample(copy.deepcopy(plain))
    with torch.inference_mode():
        expected, got = plain(x), fast(x)
        assert got.shape == expected.shape == (shape[0], 6, 2 * shape[2], 2 * shape[3])
        torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)  # the merged taps only reorder the sums
        assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
        # another output size (the UNet's odd-size path) goes to the original layer
        odd = (2 * shape[2] + 1, 2 * shape[3])
        torch.testing.assert_close(fast(x, odd), plain(x, odd))


def test_packed_conv_and_onednn_linear_equal_the_plain_layers_and_fall_back_for_autograd() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 5, 3, padding=1, stride=2).eval()
    linear = torch.nn.Linear(6, 7).eval()
    fast_conv, fast_linear = PackedConv2d(copy.deepcopy(conv)), OneDNNLinear(copy.deepcopy(linear))
    x = torch.randn(2, 6, 9, 11, generator=_gen(2))
    tokens = torch.randn(2, 5, 6, generator=_gen(3))
    with torch.inference_mode():
        torch.testing.assert_close(fast_conv(x), conv(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast_conv(x[:1]), conv(x[:1]), atol=1e-5, rtol=1e-5)  # another batch size
        torch.testing.assert_close(fast_linear(tokens), linear(tokens), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast_linear(tokens.transpose(0, 1)), linear(tokens.transpose(0, 1)),
                                   atol=1e-5, rtol=1e-5)  # a non-contiguous input
    grad_x = x.clone().requires_grad_(True)
    fast_conv(grad_x).sum().backward()  # autograd takes the plain layer
    assert grad_x.grad is not None and grad_x.grad.abs().sum() > 0


def test_use_cpu_layers_swaps_a_vae_and_keeps_its_picture() -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 8, 16), down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=8).eval()
    fast = copy.deepcopy(vae)
    counts = use_cpu_layers(fast)
    assert counts["upsample"] == 2 and counts["conv"] > 10  # two 2x upsamplers; every other conv packed
    assert use_cpu_layers(fast) == {"upsample": 0, "conv": 0, "linear": 0}  # a second call leaves it as it is
    z = torch.randn(1, 4, 8, 8, generator=_gen(4))
    with torch.inference_mode():
        expected, got = vae.decode(z).sample, fast.decode(z).sample
    assert expected.shape == got.shape == (1, 3, 32, 32)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no bf16 units on this CPU")
def test_bfloat16_layers_stay_within_bfloat16_tolerance() -> None:
    from diffusers.models.upsampling import Upsample2D

    torch.manual_seed(0)
    plain = Upsample2D(8, use_conv=True).eval()
    fast = SubpixelUpsample(copy.deepcopy(plain).to(torch.bfloat16))
    x = torch.randn(1, 8, 6, 6, generator=_gen(5))
    with torch.inference_mode():
        got = fast(x.to(torch.bfloat16))
        expected = plain(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, atol=0.05, rtol=0.02)
