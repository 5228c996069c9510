"""The text families: padding never reaches the output, configs and checkpoints rebuild the
same model, and the parameter arithmetic counts what torch counts."""

from __future__ import annotations

import pytest
import torch

from slimline.compression.models.checkpoints import load_checkpoint, save_checkpoint
from slimline.compression.models.families import count_params, model_config
from slimline.compression.models.sizing import config_params
from slimline.compression.models.text_families import TEXT_CLASSES

CONFIGS = {
    "transformer": {
        "vocab_size": 100,
        "dim": 32,
        "layers": [{"heads": 4, "head_dim": 8, "ffn": 64}, {"heads": 2, "head_dim": 8, "ffn": 48}],
        "pooling": "cls",
    },
    "textcnn": {"vocab_size": 100, "dim": 16, "kernels": [3, 4, 5], "channels": [8, 6, 4]},
    "boe": {"vocab_size": 100, "dim": 16, "hidden": 32},
}


def _ids() -> torch.Tensor:
    ids = torch.randint(4, 100, (3, 10), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = 2  # [CLS]
    ids[0, 6:], ids[1, 8:] = 0, 0  # padded rows
    return ids


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_padding_to_any_length_or_an_explicit_mask_gives_the_same_scores(family):
    torch.manual_seed(0)
    model = TEXT_CLASSES[family]((16,), 5, **CONFIGS[family]).eval()
    ids = _ids()
    with torch.no_grad():
        scores = model(ids)
        longer = model(torch.cat([ids, torch.zeros(3, 6, dtype=ids.dtype)], dim=1))
        masked = model(ids, (ids != 0).long())
        junk = ids.clone()
        junk[0, 6:] = 7  # tokens the mask hides must not count
        hidden = model(junk, (ids != 0).long())
    assert scores.shape == (3, 5)
    for other in (longer, masked, hidden):
        torch.testing.assert_close(other, scores, atol=1e-6, rtol=0)
    changed = ids.clone()
    changed[0, 3] = 9  # a real token does count
    assert not torch.allclose(model(changed)[0], scores[0])


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_the_config_read_back_rebuilds_the_same_model(family):
    torch.manual_seed(0)
    model = TEXT_CLASSES[family]((16,), 5, **CONFIGS[family]).eval()
    config = model.layer_config()
    assert config == {**CONFIGS[family], "pad_id": 0}
    again = TEXT_CLASSES[family]((16,), 5, **config).eval()
    again.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(again(_ids()), model(_ids()), atol=0, rtol=0)


def test_attention_splits_by_the_head_count_it_holds():
    torch.manual_seed(0)
    model = TEXT_CLASSES["transformer"]((16,), 5, **CONFIGS["transformer"]).eval()
    attention = model.blocks[0].attention
    with torch.no_grad():
        before = model(_ids())
        attention.heads, attention.head_dim = 2, 16  # same projections, another split
        after = model(_ids())
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_a_text_checkpoint_rebuilds_through_the_families_factory(family, tmp_path):
    # the same path the stages take for every family: model_config -> checkpoint -> rebuild
    torch.manual_seed(0)
    model = TEXT_CLASSES[family]((16,), 5, **CONFIGS[family]).eval()
    config = model_config(model)
    assert config["family"] == family and config["input_shape"] == [16]
    assert config["num_classes"] == 5
    save_checkpoint(tmp_path / "model.pt", model)
    again = load_checkpoint(tmp_path / "model.pt")
    assert type(again) is type(model) and model_config(again) == config
    with torch.no_grad():
        torch.testing.assert_close(again(_ids()), model(_ids()), atol=0, rtol=0)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_the_arithmetic_count_is_torchs_count_embeddings_included(family):
    model = TEXT_CLASSES[family]((16,), 5, **CONFIGS[family])
    assert config_params(model_config(model)) == count_params(model)
    assert model.embed.weight.numel() == 100 * CONFIGS[family]["dim"]  # counted in full
