"""One dotted-override writer and one flattener for every nested mapping."""

from __future__ import annotations

import pytest

from slimline.core.params.loading import ParamsError, load_params, write_params
from slimline.core.params.overrides import apply_override, flat_dict, to_flat_dict
from tests.support.paths import ROOT


def test_override_walks_the_dotted_key_and_parses_the_value_as_yaml():
    doc: dict = {"prune": {"ratio": 0.5, "steps": 3}}
    for item in ("prune.ratio=0.25", "prune.layers=[a, b]", "new.section.flag=true", "prune.x="):
        assert apply_override(doc, item) == []
    assert doc == {
        "prune": {"ratio": 0.25, "steps": 3, "layers": ["a", "b"], "x": None},
        "new": {"section": {"flag": True}},
    }


def test_override_problems_name_the_item_and_change_nothing():
    doc: dict = {"prune": {"ratio": 0.5}}
    assert apply_override(doc, "prune.ratio") == [
        "override 'prune.ratio': key=value, e.g. prune.ratio=0.5"
    ]
    assert apply_override(doc, "prune.ratio.x=1") == [
        "prune.ratio.x: 'ratio' is not a section (override 'prune.ratio.x=1')"
    ]
    assert doc == {"prune": {"ratio": 0.5}}


def test_load_and_write_apply_overrides_alike(tmp_path):
    target = tmp_path / "params.yaml"
    write_params(target, ROOT / "params.yaml", ["prune.ratio=0.25", "seed=7"])
    written = load_params(target)
    assert written == load_params(ROOT / "params.yaml", ["prune.ratio=0.25", "seed=7"])
    with pytest.raises(ParamsError, match="'ratio' is not a section"):
        write_params(target, ROOT / "params.yaml", ["prune.ratio.x=1"])


def test_flat_dict_gives_dotted_keys_and_keeps_lists_as_values():
    nested = {"a": {"b": {"c": 1}, "d": [1, 2], "e": {}}, "f": "x", 3: {"g": None}}
    assert flat_dict(nested) == {"a.b.c": 1, "a.d": [1, 2], "f": "x", "3.g": None}
    assert flat_dict({}) == {}
    assert flat_dict({"x": 1}, prefix="p") == {"p.x": 1}


def test_params_flatten_through_the_same_function():
    params = load_params(ROOT / "params.yaml")
    assert to_flat_dict(params) == flat_dict(params.model_dump(mode="json"))
    assert to_flat_dict(params)["prune.ratio"] == params.prune.ratio
