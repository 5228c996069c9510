"""`-S key=value`: one value per flag in run, check and sweep (YAML, as `load_params` reads it);
a key repeated in a sweep is an axis of its grid; each value reaches `dvc exp run -S` intact."""

from __future__ import annotations

import math

import pytest
import yaml

from slimline.core.errors import InputError
from slimline.core.params.overrides import apply_override
from slimline.orchestration.overrides import comma_hint, dvc_set, grid, parse, single


def test_a_value_is_yaml_as_run_reads_it():
    assert parse("prune.ratio=0.5") == ("prune.ratio", 0.5)
    assert parse("student.hidden=[64,32]") == ("student.hidden", [64, 32])
    assert parse("data.target=label") == ("data.target", "label")
    assert parse("data.target=") == ("data.target", None)
    assert parse(" prune.ratio=0.5") == ("prune.ratio", 0.5)  # a stray space before the key


def test_repeating_a_key_makes_it_an_axis_of_the_grid():
    combos = grid(
        [
            "prune.ratio=0.3",
            "prune.ratio=0.5",
            "student.hidden=[64,32]",
            "student.hidden=[32, 16]",
        ]
    )
    assert combos == [
        ["prune.ratio=0.3", "student.hidden=[64,32]"],
        ["prune.ratio=0.3", "student.hidden=[32, 16]"],
        ["prune.ratio=0.5", "student.hidden=[64,32]"],
        ["prune.ratio=0.5", "student.hidden=[32, 16]"],
    ]
    # each candidate's overrides give the params `run` would run with: the list is one value
    doc: dict = {}
    for item in combos[1]:
        apply_override(doc, item)
    assert doc == {"prune": {"ratio": 0.3}, "student": {"hidden": [32, 16]}}
    # a key given once is fixed in every candidate; keys keep the order they first came in
    assert grid(["seed=1", "prune.ratio=0.3", "prune.ratio=0.5"]) == [
        ["seed=1", "prune.ratio=0.3"],
        ["seed=1", "prune.ratio=0.5"],
    ]
    assert grid(["seed=1"]) == [["seed=1"]]


@pytest.mark.parametrize(
    "bad, said",
    [
        ([], "at least one"),
        (["prune.ratio"], "key=value"),
        (["=0.3"], "key=value"),
        (["prune ratio=0.3"], "not a dotted params key"),
        (["student.hidden=[64,32"], "not valid YAML"),
        (["prune.ratio=0.3", "prune.ratio=0.30"], "already has this value"),
    ],
)
def test_a_malformed_grid_names_the_flag(bad, said):
    with pytest.raises(InputError, match=said) as e:
        grid(bad)
    assert str(e.value).startswith("-S")


def test_run_takes_one_value_per_key():
    assert single(None) == [] and single(["seed=1", "prune.ratio=0.5"]) == [
        "seed=1",
        "prune.ratio=0.5",
    ]
    with pytest.raises(InputError, match=r"^-S prune.ratio: given twice .*slimline sweep"):
        single(["prune.ratio=0.3", "prune.ratio=0.5"])
    with pytest.raises(InputError, match=r"^-S 'x=\[1': the value is not valid YAML"):
        single(["x=[1"])


def test_the_old_comma_grid_gets_a_hint_in_the_new_form():
    hint = comma_hint(["prune.ratio=0.3,0.5"])
    assert "-S prune.ratio=0.3 -S prune.ratio=0.5" in hint
    assert comma_hint(["prune.ratio=0.3", "student.hidden=[64,32]"]) == ""


# values a params file can hold, and the ones Hydra's grammar (DVC's -S) would misread raw:
# a comma is a Hydra choice sweep, quotes, `${...}` an OmegaConf interpolation, backslashes
VALUES = [
    0.3, 1, -2, 1.5e300, float("inf"), True, False, None, "static", "", " lead", "a,b",
    "[x]", "{a}", "it's", "'", "a\\b", "a\\", "\\", "a\\'b", "${paths.dist}", "\\${x}",
    "C:/data x", "=x=", "#x", "$x", "é ü", "null", "true", "1e-3",
    [64, 32], [], [[1, 2], ["a", "b,c"]], {"k": 1, "j": [1, "x"]}, {},
]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_every_value_survives_dvc_exp_run_set_param(tmp_path, value):
    """The candidate's `-S` goes through DVC's own override code (Hydra, OmegaConf, its YAML
    writer) into params.yaml, as `dvc exp run --temp -S` does: the file then holds the value
    `slimline run -S` would have written."""
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize import load_yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    item = "student.hidden=" + text.strip().removesuffix("...").strip()
    key, expected = parse(item)
    assert expected == value or (isinstance(value, float) and math.isnan(value))
    params = tmp_path / "params.yaml"
    params.write_text("seed: 1\nstudent:\n  arch: cnn\n")
    apply_overrides(params, [dvc_set(item)])
    written = load_yaml(params)
    assert written["student"]["hidden"] == expected
    assert written["student"]["arch"] == "cnn" and written["seed"] == 1


def test_a_key_params_yaml_does_not_spell_out_is_added_as_run_adds_it(tmp_path):
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize import load_yaml

    params = tmp_path / "params.yaml"
    params.write_text("seed: 1\n")
    apply_overrides(params, [dvc_set("student.width=16"), dvc_set("student.hidden=[64,32]")])
    assert load_yaml(params) == {"seed": 1, "student": {"width": 16, "hidden": [64, 32]}}


def test_a_mapping_key_hydra_cannot_carry_is_refused_naming_the_flag():
    with pytest.raises(InputError, match=r"^-S 'x=\{a b: 1\}'"):
        dvc_set("x={a b: 1}")


def test_run_writes_the_override_it_validated_with_spaces_gone():
    # validated as prune.ratio, then written with the raw item, a " prune" section appeared
    assert single([" prune.ratio=0.5", "prune.steps =3"]) == [
        "prune.ratio=0.5",
        "prune.steps=3",
    ]
