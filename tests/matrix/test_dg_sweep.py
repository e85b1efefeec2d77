"""DomainBed's random hyper-parameter search: the draws, and the grid key that expands them."""
from __future__ import annotations

import pytest
import yaml

from benchmarks.matrix.dg_sweep import domainbed_draw, seed_hash
from benchmarks.matrix.expand import Filters, expand
from benchmarks.matrix.grids import GRID_DIR, GridError, parse_grid

# Printed by DomainBed's own registry (facebookresearch/DomainBed b93c22a, domainbed/hparams_registry.py):
# random_hparams("ERM", dataset, misc.seed_hash(setting, trial)) for these (setting, trial) pairs.
DOMAINBED_PRINTED = {
    ("RotatedMNIST", 1, 0): (0.00011906162909279594, 372, 0.0),
    ("RotatedMNIST", 2, 0): (0.0003207929136369226, 126, 0.0),
    ("RotatedMNIST", 1, 1): (9.242078636590432e-05, 8, 0.0),
    ("RotatedMNIST", 19, 2): (0.00015242216222304298, 89, 0.0),
    ("PACS", 1, 0): (2.7028930742148706e-05, 39, 0.00044832883881609976),
    ("PACS", 19, 2): (3.25301517026644e-05, 21, 0.007328859252981211),
    ("DomainNet", 2, 0): (5.6841898471378446e-05, 20, 0.005100223533962902),
    ("DomainNet", 19, 2): (3.25301517026644e-05, 17, 0.007328859252981211),
}
SUITE = {"RotatedMNIST": "rotated-mnist", "PACS": "pacs", "DomainNet": "domainnet"}


@pytest.mark.parametrize("key", sorted(DOMAINBED_PRINTED))
def test_draws_are_domainbeds(key):
    dataset, setting, trial = key
    lr, batch, decay = DOMAINBED_PRINTED[key]
    assert domainbed_draw(SUITE[dataset], setting, trial) == {"lr": lr, "batch_size": batch,
                                                              "weight_decay": decay}


def test_seed_hash_and_setting_zero():
    assert seed_hash(1, 0) == seed_hash(1, 0) != seed_hash(0, 1)
    with pytest.raises(ValueError, match="setting 0 is the defaults"):
        domainbed_draw("rotated-mnist", 0, 0)


def _grid(draws: dict | None) -> dict:
    data = yaml.safe_load((GRID_DIR / "domaingen.yaml").read_text())
    if draws is not None:
        data["hparam_draws"] = draws
    return data


def test_grid_settings_expand_with_setting_zero_unchanged():
    filters = Filters(methods=("fp", "qtdog"), datasets=("rotated-mnist->30",), bits=("7/32",), seeds=(1,))
    plain = expand(parse_grid(_grid(None)), "quick", filters)
    swept = expand(parse_grid(_grid({"quick": 3})), "quick", filters)
    assert len(plain) == 2 and len(swept) == 6
    assert {s.run_id for s in plain} <= {s.run_id for s in swept}  # setting 0: the same runs
    drawn = [s for s in swept if s.method == "qtdog" and s.run_id not in {p.run_id for p in plain}]
    assert [(s.recipe.lr, s.recipe.batch_size) for s in drawn] == [
        (d["lr"], d["batch_size"]) for d in (domainbed_draw("rotated-mnist", k, 1) for k in (1, 2))]
    fp_ids = {s.run_id for s in swept if s.method == "fp"}
    for run in drawn:  # each setting's QAT run continues from the ERM run of the same setting
        assert run.parent().run_id in fp_ids and run.parent().recipe.lr == run.recipe.lr


def test_grid_key_is_validated():
    with pytest.raises(GridError, match="hparam_draws must map profiles"):
        parse_grid(_grid({"quick": 0}))
    data = yaml.safe_load((GRID_DIR / "smoke.yaml").read_text())
    data["hparam_draws"] = {"full": 2}
    with pytest.raises(GridError, match="domain-generalization suites only"):
        parse_grid(data)
