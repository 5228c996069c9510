"""A sweep's candidates as DVC experiments: the grid and the `dvc exp run` command."""

from __future__ import annotations

import pytest

from slimline.core.errors import InputError
from slimline.orchestration.experiments import exp_argv, grid


def test_the_grid_is_every_combination_in_order():
    combos = grid(["prune.ratio=0.3,0.5,0.7", "distill.temperature=2,4"])
    assert len(combos) == 6
    assert combos[0] == ["prune.ratio=0.3", "distill.temperature=2"]
    assert combos[-1] == ["prune.ratio=0.7", "distill.temperature=4"]
    assert grid(["seed=1"]) == [["seed=1"]]


@pytest.mark.parametrize("bad", [[], ["prune.ratio"], ["=0.3"], ["prune.ratio=0.3,,0.5"]])
def test_a_bad_grid_names_the_option(bad):
    with pytest.raises(InputError, match="-S"):
        grid(bad)


def test_exp_argv_is_a_named_temp_experiment_with_every_override_and_copy():
    argv = exp_argv("sweep-1", ["prune.ratio=0.3", "distill.temperature=2"], ["metrics"])
    assert argv[-11:] == [
        "exp",
        "run",
        "--temp",
        "-n",
        "sweep-1",
        "-S",
        "prune.ratio=0.3",
        "-S",
        "distill.temperature=2",
        "-C",
        "metrics",
    ]
