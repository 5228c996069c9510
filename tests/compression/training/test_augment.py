"""Train-time augmentation: crops are windows of the zero-padded image, flips mirror."""

import torch
import torch.nn.functional as F

from slimline.compression.training.augment import Augment, from_mode


def test_each_image_is_a_window_of_its_padded_self():
    x = torch.randn(16, 3, 8, 8)
    views = Augment(pad=2, flip=False)(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(16):
        windows = [padded[i, :, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(views[i], w) for w in windows)
    assert not torch.equal(views, x)  # 16 images all left in place would be 1 in 25**16


def test_flip_mirrors_about_half_and_keeps_the_rest():
    x = torch.randn(200, 1, 4, 6)
    views = Augment(pad=0, flip=True)(x, torch.Generator().manual_seed(1))
    mirrored = [torch.equal(v, o.flip(-1)) for v, o in zip(views, x, strict=True)]
    kept = [torch.equal(v, o) for v, o in zip(views, x, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 70 < sum(mirrored) < 130


def test_the_same_generator_seed_gives_the_same_views_and_modes_map():
    x = torch.randn(8, 3, 32, 32)
    a = Augment()(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, Augment()(x, torch.Generator().manual_seed(5)))
    assert from_mode("none") is None
    assert from_mode("crop") == Augment(pad=4, flip=False)
    assert from_mode("crop_flip") == Augment(pad=4, flip=True)
