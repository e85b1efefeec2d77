"""The 19 corruptions of CIFAR-10-C with their 32x32 severity constants (hendrycks/robustness,
``ImageNet-C/create_c/make_cifar_c.py``, Apache-2.0), re-implemented on numpy/scipy (+ Pillow for the two
corruptions the reference also does with Pillow: pixelate and JPEG).

Each function takes one uint8 image (H, W, 3), a severity 1..5 and the image's own random generator, and
returns floats in [0, 255]; the caller truncates to uint8 as the reference does. Where we differ from the
reference (frost's texture, spatter's edge detector, motion blur without ImageMagick) is said at the
function and in docs/datasets.md.
"""
from __future__ import annotations

from functools import lru_cache
from io import BytesIO
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from benchmarks.data.corruptions import filters

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.04, 0.06, 0.08, 0.09, 0.10][severity - 1]
    x = x / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [500, 250, 100, 75, 50][severity - 1]
    x = x / 255.0
    return np.clip(rng.poisson(x * c) / c, 0, 1) * 255


def impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper on a fraction of the *elements* (each channel on its own), half salt, half pepper, as
    scikit-image's ``random_noise(mode='s&p')``."""
    c = [0.01, 0.02, 0.03, 0.05, 0.07][severity - 1]
    x = x / 255.0
    flipped = rng.random(x.shape) < c
    salted = rng.random(x.shape) < 0.5
    return np.where(flipped, np.where(salted, 1.0, 0.0), x) * 255


def speckle_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.06, 0.1, 0.12, 0.16, 0.2][severity - 1]
    x = x / 255.0
    return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1) * 255


def gaussian_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.4, 0.6, 0.7, 0.8, 1.0][severity - 1]
    return np.clip(filters.gaussian(x / 255.0, c), 0, 1) * 255


def glass_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blur, swap each pixel with a random neighbour (scanning from the bottom-right), blur again."""
    sigma, delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2),
                                (0.4, 1, 2)][severity - 1]
    x = np.uint8(filters.gaussian(x / 255.0, sigma) * 255)
    h, w = x.shape[:2]
    # The swaps act on a flat index of pixels (Python ints: fast), applied to the image once at the end.
    order = list(range(h * w))
    rows, cols = range(h - delta, delta, -1), range(w - delta, delta, -1)
    shifts = rng.integers(-delta, delta, size=(iterations, len(rows), len(cols), 2)).tolist()
    for it in range(iterations):
        for i, r in enumerate(rows):
            for j, col in enumerate(cols):
                dx, dy = shifts[it][i][j]
                a, b = r * w + col, (r + dy) * w + col + dx
                order[a], order[b] = order[b], order[a]
    x = x.reshape(h * w, -1)[order].reshape(h, w, -1)
    return np.clip(filters.gaussian(x / 255.0, sigma), 0, 1) * 255


def defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, alias = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    return np.clip(filters.filter_channels(x / 255.0, filters.disk_kernel(radius, alias)), 0, 1) * 255


def motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """ImageMagick's motion blur re-implemented in numpy (as the ``imagecorruptions`` package does)."""
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][severity - 1]
    angle = rng.uniform(-45, 45)
    return np.clip(filters.motion_blur(x.astype(np.float64), radius, sigma, angle), 0, 255)


def zoom_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    top = [1.06, 1.11, 1.16, 1.21, 1.26][severity - 1]
    factors = np.arange(1, top, 0.01)
    x = (x / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for factor in factors:
        out += filters.clipped_zoom(x, factor)
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


def snow(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    loc, scale, zoom, threshold, radius, sigma, blend = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)][severity - 1]
    x = x.astype(np.float32) / 255.0
    h, w = x.shape[:2]
    layer = rng.normal(size=(h, w), loc=loc, scale=scale)
    layer = filters.clipped_zoom(layer[..., None], zoom)
    layer[layer < threshold] = 0
    # the reference rounds the layer to uint8 (a PNG) before blurring it
    layer = np.uint8(np.clip(layer[..., 0], 0, 1) * 255).astype(np.float64)
    angle = rng.uniform(-135, -45)
    layer = np.round(filters.motion_blur(layer[..., None], radius, sigma, angle)) / 255.0
    lifted = np.maximum(x, filters.grey(x)[..., None] * 1.5 + 0.5)
    x = blend * x + (1 - blend) * lifted
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


@lru_cache(maxsize=6)
def frost_texture(index: int, size: int = 160) -> np.ndarray:
    """A deterministic synthetic frost texture (uint8, size x size x 3).

    The reference crops the authors' six frost photographs (not redistributable with this code). We
    synthesize ice instead: a plasma-fractal haze plus a few hundred thin crystal needles, blurred, tinted
    pale blue-white; seeded by ``index`` so every run draws the same six textures.
    """
    rng = np.random.default_rng(7919 + index)
    haze = filters.plasma_fractal(rng, 256, 1.8)[:size, :size]
    needles = np.zeros((size, size))
    for _ in range(400):
        y0, x0 = rng.uniform(0, size, 2)
        length, angle = rng.uniform(4, 28), rng.uniform(0, np.pi)
        t = np.linspace(0, length, int(length * 2))
        ys = np.clip((y0 + t * np.sin(angle)).astype(int), 0, size - 1)
        xs = np.clip((x0 + t * np.cos(angle)).astype(int), 0, size - 1)
        needles[ys, xs] += rng.uniform(0.3, 1.0)
    needles = ndimage.gaussian_filter(np.clip(needles, 0, 1.5), 0.6)
    ice = 0.55 * haze + 0.9 * needles
    ice = np.clip(ice / np.quantile(ice, 0.995), 0, 1)
    tint = np.array([0.80, 0.90, 1.0])
    return np.uint8(ice[..., None] * tint * 255)


def frost(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    image_coef, frost_coef = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][severity - 1]
    texture = frost_texture(int(rng.integers(5)))  # the reference draws from its first five images only
    h, w = x.shape[:2]
    top, left = rng.integers(0, texture.shape[0] - h), rng.integers(0, texture.shape[1] - w)
    crop = texture[top:top + h, left:left + w].astype(np.float64)
    return np.clip(image_coef * x.astype(np.float64) + frost_coef * crop, 0, 255)


def fog(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    strength, decay = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    x = x / 255.0
    h, w = x.shape[:2]
    side = 1 << max(h, w, 2).bit_length() if max(h, w) & (max(h, w) - 1) else max(h, w)
    peak = x.max()
    x = x + strength * filters.plasma_fractal(rng, side, decay)[:h, :w][..., None]
    return np.clip(x * peak / (peak + strength), 0, 1) * 255


def brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.05, 0.1, 0.15, 0.2, 0.3][severity - 1]
    hsv = filters.rgb_to_hsv(x / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(filters.hsv_to_rgb(hsv), 0, 1) * 255


def saturate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    scale, shift = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
    hsv = filters.rgb_to_hsv(x / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0, 1)
    return np.clip(filters.hsv_to_rgb(hsv), 0, 1) * 255


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.75, 0.5, 0.4, 0.3, 0.15][severity - 1]
    x = x / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def elastic_transform(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A random affine jitter of three points, then a smooth random displacement field (both bilinear)."""
    side = 32  # the reference's constants are fractions of the 32-pixel CIFAR side
    alpha, sigma, jitter = [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                            (0.1, 0.03, 0.03)][severity - 1]
    alpha, sigma, jitter = side * alpha, side * sigma, side * jitter
    image = x.astype(np.float32) / 255.0
    h, w = image.shape[:2]
    centre, square = np.float32([w, h]) // 2, min(h, w) // 3
    src = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])  # (x, y)
    dst = src + rng.uniform(-jitter, jitter, size=src.shape).astype(np.float32)
    image = _warp_affine(image, src, dst)
    dx = filters.gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = filters.gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.stack([ndimage.map_coordinates(image[..., c], [yy + dy, xx + dx], order=1, mode="reflect")
                    for c in range(image.shape[2])], axis=2)
    return np.clip(out, 0, 1) * 255


def _warp_affine(image: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """OpenCV ``warpAffine(getAffineTransform(src, dst))`` with a reflect-101 border: out(p) = in(M^-1 p)."""
    forward = np.linalg.solve(np.c_[src, np.ones(3)], dst).T  # 2x3, maps (x, y, 1) -> (x', y')
    inverse = np.linalg.inv(np.r_[forward, [[0, 0, 1]]])[:2]
    h, w = image.shape[:2]
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    sx = inverse[0, 0] * xx + inverse[0, 1] * yy + inverse[0, 2]
    sy = inverse[1, 0] * xx + inverse[1, 1] * yy + inverse[1, 2]
    return np.stack([ndimage.map_coordinates(image[..., c], [sy, sx], order=1, mode="mirror")
                     for c in range(image.shape[2])], axis=2)


def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    h, w = x.shape[:2]
    image = Image.fromarray(x).resize((int(w * c), int(h * c)), Image.Resampling.BOX)
    return np.asarray(image.resize((w, h), Image.Resampling.BOX), dtype=np.float64)


def jpeg_compression(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    quality = [80, 65, 58, 50, 40][severity - 1]
    buffer = BytesIO()
    Image.fromarray(x).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float64)


def spatter(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Water drops (severities 1-3) or mud (4-5). The water branch's OpenCV Canny edge detector is replaced by
    a Sobel-magnitude edge map with the same 50/150 hysteresis thresholds (no non-maximum suppression)."""
    loc, scale, sigma, threshold, intensity, mud = [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)][severity - 1]
    x = x.astype(np.float32) / 255.0
    liquid = filters.gaussian(rng.normal(size=x.shape[:2], loc=loc, scale=scale), sigma)
    liquid[liquid < threshold] = 0
    if mud:
        mask = filters.gaussian((liquid > threshold).astype(np.float32), intensity)
        mask[mask < 0.8] = 0
        colour = np.array([63, 42, 20]) / 255.0
        return np.clip(x * (1 - mask[..., None]) + colour * mask[..., None], 0, 1) * 255
    layer = (liquid * 255).astype(np.uint8)
    dist = ndimage.distance_transform_edt(~_edges(layer))
    dist = np.minimum(dist, 20)
    dist = ndimage.uniform_filter(dist, 3, mode="mirror").astype(np.uint8)
    dist = _equalize(dist)
    kernel = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
    dist = np.clip(np.round(ndimage.correlate(dist.astype(np.float64), kernel, mode="mirror")), 0, 255)
    dist = ndimage.uniform_filter(dist, 3, mode="mirror")
    m = liquid * dist
    m = m / m.max() * intensity if m.max() > 0 else m
    colour = np.array([175, 238, 238]) / 255.0  # pale turquoise water
    return np.clip(x + m[..., None] * colour, 0, 1) * 255


def _edges(layer: np.ndarray) -> np.ndarray:
    level = layer.astype(np.float64)
    magnitude = np.hypot(ndimage.sobel(level, 0), ndimage.sobel(level, 1))
    strong, weak = magnitude > 150, magnitude > 50
    labels, _ = ndimage.label(weak)
    keep = np.unique(labels[strong])
    return np.isin(labels, keep[keep > 0])


def _equalize(x: np.ndarray) -> np.ndarray:
    """OpenCV ``equalizeHist`` of a uint8 image."""
    counts = np.bincount(x.ravel(), minlength=256)
    cdf = np.cumsum(counts)
    low = cdf[counts > 0][0]
    if cdf[-1] == low:
        return x
    lut = np.clip(np.round((cdf - low) * 255.0 / (cdf[-1] - low)), 0, 255).astype(np.uint8)
    return lut[x]


# CoTTA's stream order (the 15 benchmark corruptions), then the four held-out "extra" ones.
BENCHMARK: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur, "glass_blur": glass_blur, "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow, "frost": frost, "fog": fog, "brightness": brightness, "contrast": contrast,
    "elastic_transform": elastic_transform, "pixelate": pixelate, "jpeg_compression": jpeg_compression,
}
EXTRA: dict[str, Corruption] = {
    "speckle_noise": speckle_noise, "gaussian_blur": gaussian_blur, "spatter": spatter, "saturate": saturate,
}
