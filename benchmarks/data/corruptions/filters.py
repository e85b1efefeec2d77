"""Image-processing primitives the corruptions share, in numpy/scipy (the reference code used OpenCV,
scikit-image and ImageMagick; these re-implement the few operations it needs, for float HxWxC images).

Border handling follows the reference: OpenCV's default border (reflect-101) is scipy's ``mirror``;
scikit-image's ``gaussian`` default (``nearest``) is scipy's ``nearest``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """scikit-image's ``filters.gaussian``: a Gaussian blur of every channel (not across channels)."""
    sigmas = (sigma, sigma, 0) if x.ndim == 3 else (sigma, sigma)
    return ndimage.gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def gaussian_kernel_3x3(sigma: float) -> np.ndarray:
    """OpenCV's ``getGaussianKernel(3, sigma)`` outer product (``GaussianBlur(ksize=(3, 3))``)."""
    k = np.exp(-(np.arange(-1, 2) ** 2) / (2 * sigma**2))
    k /= k.sum()
    return np.outer(k, k)


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The defocus kernel: an aliased disk on a 17x17 grid (radius <= 8), anti-aliased by a 3x3 Gaussian."""
    half = 8 if radius <= 8 else int(radius)
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    blur = gaussian_kernel_3x3(alias_blur) if half == 8 else None
    if blur is None:  # radius > 8 uses a 5x5 Gaussian in the reference; never reached at 32x32 severities
        k = np.exp(-(np.arange(-2, 3) ** 2) / (2 * alias_blur**2))
        blur = np.outer(k, k) / k.sum() ** 2
    return ndimage.correlate(disk, blur, mode="mirror")


def filter_channels(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """OpenCV ``filter2D`` (a correlation, reflect-101 border) applied to each channel."""
    return np.stack([ndimage.correlate(x[..., c], kernel, mode="mirror") for c in range(x.shape[2])], axis=2)


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre by ``factor`` (bilinear), cropped back to the input's size."""
    h = x.shape[0]
    crop = int(np.ceil(h / factor))
    top = (h - crop) // 2
    zoomed = ndimage.zoom(x[top:top + crop, top:top + crop], (factor, factor, 1), order=1)
    trim = (zoomed.shape[0] - h) // 2
    return zoomed[trim:trim + h, trim:trim + h]


def plasma_fractal(rng: np.random.Generator, size: int = 32, wibble_decay: float = 3.0) -> np.ndarray:
    """A diamond-square height map of side ``size`` (a power of two), scaled to [0, 1] (fog's texture)."""
    if size & (size - 1):
        raise ValueError(f"plasma size must be a power of two, got {size}")
    height = np.zeros((size, size), dtype=np.float64)
    step, wibble = size, 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = height[0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        height[half:size:step, half:size:step] = wibbled_mean(square)
        centres = height[half:size:step, half:size:step]
        corners = height[0:size:step, 0:size:step]
        top = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        height[0:size:step, half:size:step] = wibbled_mean(top)
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        height[half:size:step, 0:size:step] = wibbled_mean(left)
        step //= 2
        wibble /= wibble_decay
    height -= height.min()
    return height / height.max()


def motion_blur(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's ``MotionBlurImage``: a one-sided Gaussian-weighted streak of width 2*radius+1 along
    ``angle`` degrees, edge pixels replicated (the reference called ImageMagick through Wand)."""
    width = 2 * radius + 1
    weights = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    dy_unit, dx_unit = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    h, w = x.shape[:2]
    out = np.zeros_like(x, dtype=np.float64)
    for i, weight in enumerate(weights):
        dy, dx = -math.ceil(i * dy_unit - 0.5), -math.ceil(i * dx_unit - 0.5)
        if abs(dy) >= h or abs(dx) >= w:
            break
        rows = np.clip(np.arange(h) - dy, 0, h - 1)
        cols = np.clip(np.arange(w) - dx, 0, w - 1)
        out += weight * x[rows][:, cols]
    return out


def rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] -> HSV in [0, 1] (scikit-image's ``rgb2hsv``)."""
    high, low = x.max(axis=2), x.min(axis=2)
    delta = high - low
    safe = np.where(delta == 0, 1.0, delta)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    hue = np.where(high == r, ((g - b) / safe) % 6,
                   np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = np.where(delta == 0, 0.0, hue / 6.0)
    sat = np.where(high == 0, 0.0, delta / np.where(high == 0, 1.0, high))
    return np.stack([hue, sat, high], axis=2)


def hsv_to_rgb(x: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] -> RGB in [0, 1] (scikit-image's ``hsv2rgb``)."""
    h, s, v = x[..., 0] * 6.0, x[..., 1], x[..., 2]
    sector = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(x.shape, dtype=np.float64)
    for k, (r, g, b) in enumerate(choices):
        mask = sector == k
        out[mask] = np.stack([r[mask], g[mask], b[mask]], axis=1)
    return out


def grey(x: np.ndarray) -> np.ndarray:
    """OpenCV's RGB -> grey weights."""
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
