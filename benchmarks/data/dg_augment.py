"""DomainBed's training augmentation for its image suites, on uint8 tensor batches with the caller's
generator.

DomainBed (``domainbed/datasets.py``, ``MultipleEnvironmentImageFolder``; QT-DoG's code keeps it) augments the
training domains with::

    RandomResizedCrop(224, scale=(0.7, 1.0)), RandomHorizontalFlip(), ColorJitter(0.3, 0.3, 0.3, 0.3),
    RandomGrayscale(p=0.1), ToTensor(), Normalize(ImageNet mean, std)

and evaluates with ``Resize((224, 224))`` + the same normalisation. The harness decodes every image once at
the evaluation size (``domainbed_images.py``), so the evaluation transform is the cached tensor itself, and
this module applies the training transforms to those cached images: the crop is taken from the 224×224
resized image, not from the original file (the one difference from DomainBed: a crop of the original keeps
more detail, and its aspect-ratio range applies to the original's shape instead of the squashed one).

Every random draw comes from the passed CPU generator (the trainer seeds it per seed, epoch and domain), so a
generator state gives the same batch on any device. The draws are torchvision's, in torchvision's order
(crop: ten tries at a scale/ratio draw, then the centre crop with the ratio clamped; flip; jitter: a random
order of the four adjustments, factors uniform in [0.7, 1.3], hue in [-0.3, 0.3]; grayscale), so an image
augmented here with a generator seeded s equals, up to uint8 rounding, torchvision's Compose of the same
transforms applied after ``torch.manual_seed(s)`` (tested; identical on 200 random 48-px images).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchmarks.data.tv import transforms

TF = transforms.functional
SCALE = (0.7, 1.0)
RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default
JITTER = 0.3  # brightness, contrast, saturation: factor in [1 - 0.3, 1 + 0.3]; hue: shift in [-0.3, 0.3]
GRAYSCALE_P = 0.1


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return float(torch.empty(1).uniform_(low, high, generator=generator))


def crop_box(height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of one RandomResizedCrop(scale=(0.7, 1), ratio=(3/4, 4/3)) draw."""
    area = height * width
    log_ratio = torch.log(torch.tensor(RATIO))  # float32, as torchvision: the same draws give the same box
    for _ in range(10):
        target = area * _uniform(generator, *SCALE)
        ratio = float(torch.exp(torch.empty(1).uniform_(float(log_ratio[0]), float(log_ratio[1]),
                                                         generator=generator)))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height  # fallback: the whole image, its ratio clamped into RATIO
    if in_ratio < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif in_ratio > RATIO[1]:
        h, w = height, int(round(height * RATIO[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def color_jitter(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """ColorJitter(0.3, 0.3, 0.3, 0.3) of one float image in [0, 1] (3, H, W)."""
    order = torch.randperm(4, generator=generator).tolist()
    brightness, contrast, saturation = (_uniform(generator, 1 - JITTER, 1 + JITTER) for _ in range(3))
    hue = _uniform(generator, -JITTER, JITTER)
    for which in order:
        if which == 0:
            image = TF.adjust_brightness(image, brightness)
        elif which == 1:
            image = TF.adjust_contrast(image, contrast)
        elif which == 2:
            image = TF.adjust_saturation(image, saturation)
        else:
            image = TF.adjust_hue(image, hue)
    return image


def domainbed_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """DomainBed's training transforms on a uint8 batch (B, 3, H, W); returns uint8 of the same shape (the
    crop is resized back to H×W, bilinear with antialias as torchvision's tensor resize)."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"domainbed augmentation needs RGB batches (B, 3, H, W), got {tuple(x.shape)}")
    b, _, height, width = x.shape
    out = torch.empty_like(x)
    for i in range(b):
        top, left, h, w = crop_box(height, width, generator)
        image = x[i:i + 1, :, top:top + h, left:left + w].float() / 255.0
        image = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False,
                              antialias=True)[0].clamp_(0.0, 1.0)
        if float(torch.rand(1, generator=generator)) < 0.5:
            image = image.flip(-1)
        image = color_jitter(image, generator)
        if float(torch.rand(1, generator=generator)) < GRAYSCALE_P:
            image = TF.rgb_to_grayscale(image, num_output_channels=3)
        out[i] = (image * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return out
