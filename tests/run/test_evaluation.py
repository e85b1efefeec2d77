"""``benchmarks.run.evaluation``: calibration (15-bin ECE, NLL, reliability bins) and per-class accuracy
against hand computations (plain Python loops over samples, in float64) and, for per-class accuracy,
scikit-learn.

Binning convention checked: equal-width bins [k/15, (k+1)/15), the last one closed at 1; a confidence at an
edge belongs to the bin above it. The hand computation decides the bin by comparing with the edges k/15
(with a 1e-9 slack, so that an edge hit exactly in real arithmetic counts as hit although float64 rounds 1/3
below it). Predictions are the first maximal logit (``torch.argmax``'s documented tie rule, numpy's too).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, recall_score

from benchmarks.run.evaluation import ECE_BINS, calibration, per_class_accuracy

BINS = 15
EDGE_SLACK = 1e-9
NEG = -1e4  # exp underflows to exactly 0 in float32 and float64: the class has probability 0


def hand_softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(z - top) for z in row]
    return [e / sum(exps) for e in exps]


def hand_prediction(row: list[float]) -> int:
    best = 0
    for c, z in enumerate(row):
        if z > row[best]:
            best = c
    return best


def hand_bin(confidence: float, bins: int = BINS) -> int:
    """The last k with confidence ≥ k/bins: bins [k/bins, (k+1)/bins), a confidence of 1 in the last one."""
    chosen = 0
    for k in range(bins):
        if confidence >= k / bins - EDGE_SLACK:
            chosen = k
    return chosen


def hand_calibration(logits: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> dict:
    count, conf_sum, acc_sum = [0] * bins, [0.0] * bins, [0.0] * bins
    nll = 0.0
    for row, y in zip(logits.double().tolist(), labels.tolist()):
        probs = hand_softmax(row)
        predicted = hand_prediction(row)
        confidence = probs[predicted]
        b = hand_bin(confidence, bins)
        count[b] += 1
        conf_sum[b] += confidence
        acc_sum[b] += 1.0 if predicted == y else 0.0
        top = max(row)
        nll += top + math.log(sum(math.exp(z - top) for z in row)) - row[y]
    n = len(labels)
    return {
        "ece": sum(abs(acc_sum[b] - conf_sum[b]) for b in range(bins)) / n,
        "nll": nll / n,
        "bin_count": count,
        "bin_confidence": [conf_sum[b] / max(count[b], 1) for b in range(bins)],
        "bin_accuracy": [acc_sum[b] / max(count[b], 1) for b in range(bins)],
    }


def hand_per_class(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    hits, totals = [0] * num_classes, [0] * num_classes
    for row, y in zip(logits.tolist(), labels.tolist()):
        totals[y] += 1
        hits[y] += hand_prediction(row) == y
    return [None if totals[c] == 0 else 100.0 * hits[c] / totals[c] for c in range(num_classes)]


def edge_ties(num_classes: int = 15) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose confidence sits exactly on an edge in real arithmetic: m equal maximal logits and the rest
    at probability 0 give 1/m — 1/15, 1/5 = 3/15, 1/3 = 5/15 — and one maximal logit gives 1 (the top edge).
    Each row twice: labelled with the first maximal class (correct) and with the last (wrong: ties go to the
    first), and with a few offsets of the logits."""
    rows, labels = [], []
    for m in (num_classes, 5, 3, 1, 2):
        for offset in (0.0, 2.5, -7.0):
            row = [offset] * m + [NEG] * (num_classes - m)
            for label in (0, m - 1):
                rows.append(row)
                labels.append(label)
    return torch.tensor(rows, dtype=torch.float32), torch.tensor(labels)


def random_logits(seed: int, n: int = 3000, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidences spread over every bin (per-row temperatures), labels agreeing with the argmax half the
    time, rows whose two first logits tie for the maximum, and one class (the last) with no sample."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, num_classes, generator=g) * torch.rand(n, 1, generator=g).mul(6).exp2()
    tied = logits[: n // 20]
    tied[:, 0] = tied[:, 1] = tied.max(1).values + 1.0  # a two-way tie (a third would put 1/3, an edge, near)
    labels = torch.where(torch.rand(n, generator=g) < 0.5, logits.argmax(1),
                         torch.randint(0, num_classes, (n,), generator=g))
    labels[labels == num_classes - 1] = 0
    logits[:, num_classes - 1] -= 50.0  # never predicted either
    return logits, labels


def assert_calibration_matches(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Bin counts exactly; values to float32 accumulation accuracy (a bin's confidences are summed in float32:
    ~1.5e-6 off for 1,500 confidences near 1)."""
    got, expected = calibration(logits, labels), hand_calibration(logits, labels)
    assert got["reliability"]["bin_count"] == expected["bin_count"]
    assert got["ece"] == pytest.approx(expected["ece"], abs=1e-5)
    assert got["nll"] == pytest.approx(expected["nll"], rel=1e-5, abs=1e-6)
    for key in ("bin_confidence", "bin_accuracy"):
        assert got["reliability"][key] == pytest.approx(expected[key], abs=1e-5), key
    return got


def test_ece_uses_fifteen_bins():
    assert ECE_BINS == BINS
    assert len(calibration(torch.zeros(2, 3), torch.tensor([0, 1]))["reliability"]["bin_count"]) == BINS


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibration_matches_the_hand_computation_on_random_logits(seed):
    logits, labels = random_logits(seed)
    got = assert_calibration_matches(logits, labels)
    assert all(count > 0 for count in got["reliability"]["bin_count"][2:])  # the bins are exercised
    assert 0.0 < got["ece"] < 1.0


def test_calibration_at_bin_edges_and_argmax_ties():
    logits, labels = edge_ties()
    got = assert_calibration_matches(logits, labels)
    counts = got["reliability"]["bin_count"]
    # 1/15 → bin 1, 1/5 → bin 3, 1/3 → bin 5, 1/2 → bin 7, 1 → bin 14 (the last bin is closed): 6 rows each
    assert counts == [0, 6, 0, 6, 0, 6, 0, 6, 0, 0, 0, 0, 0, 0, 6]
    # half of each edge's rows are right (label = first maximal class), except m = 1 where both labels are 0
    assert got["reliability"]["bin_accuracy"][14] == 1.0
    assert got["reliability"]["bin_accuracy"][1] == got["reliability"]["bin_accuracy"][5] == 0.5


def test_calibration_of_a_mixed_batch_with_edges():
    ties, tie_labels = edge_ties(10)
    logits, labels = random_logits(3, n=500)
    assert_calibration_matches(torch.cat([logits, ties]), torch.cat([labels, tie_labels]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_accuracy_matches_hand_and_sklearn(seed):
    num_classes = 10
    logits, labels = random_logits(seed, num_classes=num_classes)
    got = per_class_accuracy(logits, labels, num_classes)
    assert got == hand_per_class(logits, labels, num_classes)
    assert got[num_classes - 1] is None  # no sample of the last class

    predicted = np.argmax(logits.numpy(), axis=1)  # first maximal index, as torch.argmax
    recall = recall_score(labels.numpy(), predicted, labels=list(range(num_classes)), average=None,
                          zero_division=np.nan)
    matrix = confusion_matrix(labels.numpy(), predicted, labels=list(range(num_classes)))
    for c in range(num_classes):
        if got[c] is None:
            assert math.isnan(recall[c]) and matrix[c].sum() == 0
        else:
            assert got[c] == pytest.approx(100.0 * recall[c], rel=1e-12)
            assert got[c] == pytest.approx(100.0 * matrix[c, c] / matrix[c].sum(), rel=1e-12)


def test_per_class_accuracy_breaks_argmax_ties_towards_the_first_class():
    logits, labels = edge_ties()
    got = per_class_accuracy(logits, labels, 15)
    assert got == hand_per_class(logits, labels, 15)
    predicted = np.argmax(logits.numpy(), axis=1)
    recall = recall_score(labels.numpy(), predicted, labels=list(range(15)), average=None,
                          zero_division=np.nan)
    assert got[0] == pytest.approx(100.0 * recall[0]) == 100.0
    assert got[14] == 0.0 and got[4] == 0.0 and got[1] == 0.0  # the last of 15, 5 and 2 tied classes
    assert got[3] is None
