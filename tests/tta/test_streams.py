import numpy as np
import pytest
import torch

from benchmarks.data.base import ImageTensors
from benchmarks.data.corruptions import CONTINUAL_ORDER
from benchmarks.data.corruptions.files import load_cifar_c, load_imagenet_c
from benchmarks.data.streams import Segment, StreamSpec, build_stream, label_shift_order, stream_batches


def _clean(n: int = 40) -> ImageTensors:
    g = torch.Generator().manual_seed(0)
    return ImageTensors(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                        torch.arange(n) % 10)


def test_stream_order_and_sizes_are_as_specified():
    spec = StreamSpec(corruptions=("gaussian_noise", "contrast", "pixelate"), severity=5, size=12, seed=1)
    segments = build_stream(spec, _clean(), "fake")
    assert [s.corruption for s in segments] == ["gaussian_noise", "contrast", "pixelate"]
    assert [len(s.data) for s in segments] == [12, 12, 12]
    # every corruption sees the same clean images (as CIFAR-10-C corrupts one test set)
    assert sorted(segments[0].data.labels.tolist()) == sorted(segments[1].data.labels.tolist())
    assert StreamSpec().corruptions == CONTINUAL_ORDER and StreamSpec().severity == 5
    assert StreamSpec().batch_size == 200


def test_stream_is_deterministic_per_seed():
    spec = StreamSpec(corruptions=("shot_noise",), size=10, seed=4)
    a, b = build_stream(spec, _clean(), "fake")[0], build_stream(spec, _clean(), "fake")[0]
    assert torch.equal(a.data.images, b.data.images) and torch.equal(a.data.labels, b.data.labels)
    c = build_stream(StreamSpec(corruptions=("shot_noise",), size=10, seed=5), _clean(), "fake")[0]
    assert not torch.equal(a.data.images, c.data.images)


def test_label_shift_order_concentrates_classes_in_time():
    labels = np.repeat(np.arange(10), 100)
    rng = np.random.default_rng(0)
    order = label_shift_order(labels, 50, 0.05, rng)
    assert sorted(order.tolist()) == list(range(1000))  # a permutation: no image lost or repeated
    shifted = [len(set(labels[order][i:i + 50])) for i in range(0, 1000, 50)]
    shuffled = [len(set(labels[rng.permutation(1000)][i:i + 50])) for i in range(0, 1000, 50)]
    assert np.mean(shifted) < 5 < np.mean(shuffled)


def test_last_batch_of_one_joins_the_previous_one():
    segment = Segment("fog", _clean(11))
    assert [len(y) for _, y in stream_batches(segment, 5)] == [5, 6]
    assert [len(y) for _, y in stream_batches(segment, 4)] == [4, 4, 3]


def test_bad_stream_keys_fail_in_one_line():
    with pytest.raises(ValueError, match="unknown stream source 'cifar-c'; valid: synthetic"):
        StreamSpec(source="cifar-c")
    with pytest.raises(ValueError, match="invalid severity 0"):
        StreamSpec(severity=0)
    with pytest.raises(ValueError, match="unknown stream key 'order'"):
        StreamSpec.from_dict({"order": "random"})


def test_released_cifar_c_files_load_by_severity(tmp_path):
    root, tmp_path = tmp_path, tmp_path / "CIFAR-10-C"
    tmp_path.mkdir()
    n = 4  # images per severity; the file stacks severities 1..5
    images = np.stack([np.full((32, 32, 3), 10 * s + i, dtype=np.uint8)
                       for s in range(1, 6) for i in range(n)])
    np.save(tmp_path / "fog.npy", images)
    np.save(tmp_path / "labels.npy", np.tile(np.arange(n), 5).astype(np.uint8))
    split = load_cifar_c(tmp_path, "fog", 3)
    assert split.images.shape == (n, 3, 32, 32)
    assert split.images[:, 0, 0, 0].tolist() == [30, 31, 32, 33]
    assert split.labels.tolist() == [0, 1, 2, 3]
    stream = build_stream(StreamSpec(corruptions=("fog",), severity=3, source="cifar10-c"), None, "cifar10",
                          root=root)
    assert sorted(stream[0].data.images[:, 0, 0, 0].tolist()) == [30, 31, 32, 33]
    with pytest.raises(FileNotFoundError, match="snow.npy"):
        load_cifar_c(tmp_path, "snow", 1)


def test_imagenet_c_folders_load(tmp_path):
    from PIL import Image

    for wnid, value in (("n01440764", 50), ("n01443537", 200)):
        folder = tmp_path / "snow" / "5" / wnid
        folder.mkdir(parents=True)
        Image.fromarray(np.full((40, 40, 3), value, dtype=np.uint8)).save(folder / "a.JPEG")
    split = load_imagenet_c(tmp_path, "snow", 5, size=(16, 16))
    assert split.images.shape == (2, 3, 16, 16) and split.labels.tolist() == [0, 1]
    assert abs(int(split.images[1].float().mean()) - 200) <= 2
