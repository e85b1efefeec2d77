import numpy as np
import pytest
import torch

from benchmarks.data.corruptions import ALL, CONTINUAL_ORDER, EXTRA_NAMES, corrupt
from benchmarks.data.corruptions.filters import hsv_to_rgb, rgb_to_hsv

# Corruptions whose published 32x32 constants do not grow the pixel distance with severity: glass blur's
# severity 4 blurs less than 3 (sigma .25 vs .4); elastic's affine jitter shrinks as its displacement grows;
# frost's image weight and frost weight trade places; spatter turns from water to mud at 4; saturate first
# desaturates (x0.3, x0.1) then over-saturates (x1.5 ...); motion blur's severity 4 only lengthens a streak
# whose Gaussian weights (sigma 2, as at 3) are already near zero there. Each must still change the image.
NOT_MONOTONE = {"glass_blur", "elastic_transform", "frost", "spatter", "saturate", "motion_blur"}


def test_the_stream_order_is_cottas():
    assert CONTINUAL_ORDER == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
        "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
        "jpeg_compression")
    assert EXTRA_NAMES == ("speckle_noise", "gaussian_blur", "spatter", "saturate")


@pytest.mark.parametrize("name", ALL)
def test_deterministic_per_seed_and_independent_of_batching(name, digits_test):
    x = digits_test[:6]
    first = corrupt(x, name, 5, seed=3)
    assert first.dtype == torch.uint8 and first.shape == x.shape
    assert torch.equal(first, corrupt(x, name, 5, seed=3))
    # image i's randomness is its own: corrupting a sub-batch gives the same images
    assert torch.equal(first[:3], corrupt(x[:3], name, 5, seed=3))
    assert not torch.equal(first, x)


def test_random_corruptions_change_with_the_seed(digits_test):
    x = digits_test[:4]
    for name in ("gaussian_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "fog", "frost"):
        assert not torch.equal(corrupt(x, name, 5, seed=0), corrupt(x, name, 5, seed=1)), name


@pytest.mark.parametrize("name", ALL)
def test_severity_moves_the_image_away_from_clean(name, digits_test):
    x = digits_test[:24]
    rms = [(corrupt(x, name, s).float() - x.float()).pow(2).mean().sqrt().item() for s in range(1, 6)]
    assert min(rms) > 0.5
    if name not in NOT_MONOTONE:
        assert all(a < b for a, b in zip(rms, rms[1:])), rms


def test_28x28_and_grey_inputs_are_padded_and_keep_their_shape(digits_test):
    grey = digits_test[:4].float().mean(1, keepdim=True).round().to(torch.uint8)
    small = grey[..., 2:30, 2:30].contiguous()
    out = corrupt(small, "fog", 3)
    assert out.shape == (4, 1, 28, 28) and out.dtype == torch.uint8
    assert not torch.equal(out, small)


def test_bad_names_and_severities_fail_in_one_line(digits_test):
    with pytest.raises(ValueError, match="unknown corruption 'rain'; valid: gaussian_noise"):
        corrupt(digits_test[:1], "rain", 1)
    with pytest.raises(ValueError, match="invalid severity 6; valid: 1, 2, 3, 4, 5"):
        corrupt(digits_test[:1], "fog", 6)
    with pytest.raises(ValueError, match="32x32 or 28x28"):
        corrupt(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "fog", 1)


def test_contrast_and_gaussian_noise_match_the_reference_formulas(digits_test):
    """Two corruptions re-derived by hand from make_cifar_c.py's formulas."""
    x = digits_test[:2]
    img = x.permute(0, 2, 3, 1).numpy() / 255.0
    means = img.mean(axis=(1, 2), keepdims=True)
    expected = np.uint8(np.clip((img - means) * 0.15 + means, 0, 1) * 255)
    assert np.array_equal(corrupt(x, "contrast", 5).permute(0, 2, 3, 1).numpy(), expected)
    rng = np.random.default_rng([0, 0, 1, 0])  # seed, corruption index, severity, image index
    noisy = np.uint8(np.clip(img[0] + rng.normal(size=img[0].shape, scale=0.04), 0, 1) * 255)
    assert np.array_equal(corrupt(x, "gaussian_noise", 1)[0].permute(1, 2, 0).numpy(), noisy)


def test_hsv_round_trip_matches_colorsys():
    import colorsys

    rgb = np.random.default_rng(0).random((5, 7, 3))
    hsv = rgb_to_hsv(rgb)
    ref = np.array([[colorsys.rgb_to_hsv(*px) for px in row] for row in rgb])
    assert np.allclose(hsv, ref)
    assert np.allclose(hsv_to_rgb(hsv), rgb)
