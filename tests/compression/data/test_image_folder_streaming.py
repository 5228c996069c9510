"""An image folder prepared streamed (decoded once to a temporary file, then read back in
blocks): the bytes of the in-memory recipe, memory that does not grow with the folder, a bad
file anywhere refused by name, and no temporary file left behind."""

from __future__ import annotations

import hashlib
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from slimline.compression.data import expectations, images, learnability, rows
from slimline.compression.data import prepare as recipe
from slimline.compression.data.dataset import DataError
from slimline.compression.data.images import DECODED_PREFIX, DECODED_SUFFIX, decode_image_folder
from slimline.compression.data.normalize import pixel_statistics
from slimline.compression.data.prepare import prepare, prepare_in_memory
from slimline.compression.data.sources import load_source
from slimline.compression.data.split import sample_groups
from slimline.core.params.inputs import Data
from slimline.core.params.loading import load_params
from slimline.core.params.schema import Params
from tests.support.data import make_images
from tests.support.params import write_params

OUTPUTS = ("data/prepared/train.npz", "data/prepared/val.npz", "data/prepared/test.npz",
           "reports/data_validation.json")  # fmt: skip


def rgb_folder(root: Path, per_class: int, classes: int = 3, size: int = 16, seed: int = 0):
    """Noisy RGB images, class k brighter in channel k % 3 and in a band of rows; PNGs, plus a
    JPEG (lossy: not a duplicate) and an exact copy in every class (dropped as a duplicate)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / f"c{k}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
            img[:, :, k % 3] += 120
            img[k * 3 : k * 3 + 3] += 40
            Image.fromarray(img, mode="RGB").save(folder / f"{i:05d}.png")
        Image.open(folder / "00000.png").save(folder / "dup.jpg", quality=90)
        shutil.copy(folder / "00001.png", folder / "dup.png")
    return root


def grey_folder(root: Path, per_class: int) -> Path:
    """Grey images of separable bands, some saved as RGB PNGs with equal channels."""
    from PIL import Image

    x, y = make_images(n_per_class=per_class, size=12, seed=2)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        grey = Image.fromarray((img[0] * 255).astype(np.uint8), mode="L")
        (grey.convert("RGB") if i % 2 else grey).save(folder / f"{i:04d}.png")
    return root


def params_for(root: Path, folder: Path, **data_keys) -> Params:
    root.mkdir(parents=True, exist_ok=True)
    keys = {"source": "image-folder", "path": str(folder), "image_size": 16,
            "val_fraction": 0.2, "test_fraction": 0.2, **data_keys}  # fmt: skip
    return load_params(write_params(root / "params.yaml", data=keys))


def outputs(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in OUTPUTS}


def leftovers(root: Path) -> list[Path]:
    """Hidden files in the prepared folder: temporary decoded pixels or half-written splits."""
    return sorted((root / "data/prepared").glob(".*"))


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few rows and decode batches of 7 images: every streamed path loops."""
    for module in (rows, images):
        monkeypatch.setattr(module, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(images, "DECODE_BATCH", 7)


@pytest.mark.parametrize("kind", ["rgb", "grey"])
def test_streamed_prepare_writes_the_bytes_of_the_in_memory_recipe(tmp_path, small_blocks, kind):
    folder = (rgb_folder if kind == "rgb" else grey_folder)(tmp_path / "images", 20)
    streamed = prepare(params_for(tmp_path / "a", folder), tmp_path / "a")
    in_memory = prepare_in_memory(params_for(tmp_path / "b", folder), tmp_path / "b")
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")  # splits and report, byte for byte
    assert streamed == in_memory
    assert streamed["duplicates_dropped"] == (3 if kind == "rgb" else 0)
    with np.load(tmp_path / "a/data/prepared/train.npz") as z:
        assert z["x"].shape[1] == (3 if kind == "rgb" else 1)
    source = load_source(Data(source="image-folder", path=str(folder), image_size=16), tmp_path)
    assert streamed["sha256"] == source.sha256  # the data as it came, hashed the same way
    assert leftovers(tmp_path / "a") == []


def test_decoded_rows_are_the_in_memory_x(tmp_path, small_blocks):
    folder = grey_folder(tmp_path / "images", 6)
    source = load_source(Data(source="image-folder", path=str(folder), image_size=10), tmp_path)
    with decode_image_folder(folder, 10, tmp_path / "scratch") as decoded:
        assert decoded.grey and decoded.input_shape == (1, 10, 10)
        rows = np.array([17, 0, 5, 5, 11])
        np.testing.assert_array_equal(decoded.x(rows), source.x[rows])
        np.testing.assert_array_equal(decoded.x(slice(None)), source.x)
        assert decoded.sha256 == source.sha256 and decoded.y.tolist() == source.y.tolist()
        assert len(list((tmp_path / "scratch").iterdir())) == 1  # the decoded pixels
    assert not (tmp_path / "scratch").exists()  # removed on leaving, with the folder it made


def test_capped_probe_draws_a_documented_stratified_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(learnability, "MAX_TRAIN", 30)
    monkeypatch.setattr(learnability, "MAX_HELD_OUT", 24)
    folder = rgb_folder(tmp_path / "images", 30)
    streamed = prepare(params_for(tmp_path / "a", folder), tmp_path / "a")
    in_memory = prepare_in_memory(params_for(tmp_path / "b", folder), tmp_path / "b")
    for name in OUTPUTS[:3]:  # the splits stay the same bytes; only the probe's draw differs
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    probe = streamed["learnability"]
    assert probe["sample"] == {"method": learnability.STRATIFIED, "max_train": 30,
                               "max_held_out": 24}  # fmt: skip
    assert probe["train_samples"] == 30 and probe["held_out_samples"] == 24
    assert probe["verdict"] == "learnable" and "sample" not in in_memory["learnability"]


@pytest.mark.parametrize("bad", ["corrupt", "truncated", "not_an_image"])
def test_a_bad_file_late_in_the_folder_is_named_and_nothing_is_half_written(
    tmp_path, small_blocks, bad
):
    folder = rgb_folder(tmp_path / "images", 20)
    params = params_for(tmp_path / "p", folder)
    prepare(params, tmp_path / "p")
    before = outputs(tmp_path / "p")
    last = folder / "c2"  # sorted last: the images before it are decoded and written first
    if bad == "corrupt":
        broken = last / "zz.png"
        broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
        message = f"{broken}: unreadable image"
    elif bad == "truncated":
        broken = last / "zz.png"
        broken.write_bytes((last / "00003.png").read_bytes()[:300])
        message = f"{broken}: unreadable image"
    else:
        broken = last / "zz.txt"
        broken.write_text("not a picture\n")
        message = f"{broken}: not an image (expected .png, .jpg, .jpeg)"
    with pytest.raises(DataError) as info:
        prepare(params, tmp_path / "p")
    assert str(info.value).startswith(message)
    assert outputs(tmp_path / "p") == before
    assert leftovers(tmp_path / "p") == []


def test_a_refused_first_run_leaves_no_prepared_folder(tmp_path, small_blocks):
    folder = rgb_folder(tmp_path / "images", 20)
    (folder / "c2" / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    with pytest.raises(DataError, match="zz.png: unreadable image"):
        prepare(params_for(tmp_path / "p", folder), tmp_path / "p")
    assert not (tmp_path / "p/data/prepared").exists()
    with pytest.raises(DataError, match="folder not found"):
        prepare(params_for(tmp_path / "p", tmp_path / "absent"), tmp_path / "p")
    assert not (tmp_path / "p/data/prepared").exists()


def test_the_decoded_file_is_removed_after_a_later_failure_and_a_stale_one_too(
    tmp_path, monkeypatch
):
    folder = rgb_folder(tmp_path / "images", 20)
    root = tmp_path / "p"
    params = params_for(root, folder)
    stale = root / "data/prepared" / f"{DECODED_PREFIX}killed{DECODED_SUFFIX}"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a killed run")
    seen: list[list[str]] = []
    statistics = pixel_statistics

    def spy(images, rows):
        seen.append([p.name for p in leftovers(root)])
        return statistics(images, rows)

    def broken(*_):
        raise RuntimeError("gx exploded")

    monkeypatch.setattr(recipe, "pixel_statistics", spy)
    monkeypatch.setattr(expectations, "_run", broken)
    with pytest.raises(expectations.DataValidationError, match="could not run"):
        prepare(params, root)
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].startswith(DECODED_PREFIX)
    assert seen[0][0] != stale.name  # the stale file went first
    assert leftovers(root) == [] and not (root / OUTPUTS[0]).exists()


def traced_peak(run) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_of_a_streamed_prepare_does_not_grow_with_the_folder(tmp_path, monkeypatch):
    # blocks, decode batches and the probe's sample all far below the folder: what is left
    # to grow is the per-sample bookkeeping (labels, hashes, GX summary rows)
    for module in (rows, images):
        monkeypatch.setattr(module, "BLOCK_BYTES", 64 << 10)
    monkeypatch.setattr(images, "DECODE_BATCH", 16)
    monkeypatch.setattr(learnability, "MAX_TRAIN", 40)  # below both folders' splits
    monkeypatch.setattr(learnability, "MAX_HELD_OUT", 30)
    size, small, large = 48, 30, 120  # per class, 3 classes
    folders = {n: rgb_folder(tmp_path / f"images{n}", n, size=size, seed=n) for n in (small, large)}

    def run(n: int, recipe=prepare):
        root = tmp_path / f"{recipe.__name__}{n}"
        return lambda: recipe(params_for(root, folders[n], image_size=size), root)

    run(small)()  # imports (GX, scikit-learn, PIL) before anything is traced
    grown = traced_peak(run(large)) - traced_peak(run(small))
    data_grown = 3 * (large - small) * 3 * size * size * 4  # float32 x
    assert grown < 0.2 * data_grown, (grown, data_grown)
    # the measurement sees data held in memory: the in-memory recipe grows by more than x
    in_memory = traced_peak(run(large, prepare_in_memory)) - traced_peak(
        run(small, prepare_in_memory)
    )
    assert in_memory > data_grown, (in_memory, data_grown)


def test_a_hash_per_sample_groups_samples_as_their_values_do():
    x, y = make_images(n_per_class=10)
    x = np.concatenate([x, x[[3, 3, 17]]])
    keys = np.stack([np.frombuffer(hashlib.blake2b(r.tobytes(), digest_size=16).digest(),
                                   np.uint64) for r in x])  # fmt: skip
    by_value, by_key = sample_groups(x.reshape(len(x), -1)), sample_groups(keys)
    np.testing.assert_array_equal(np.sort(by_value[0]), np.sort(by_key[0]))  # same firsts
    assert len(by_key[0]) == 30
    # the groups may be numbered differently, but hold the same samples
    assert {tuple(np.flatnonzero(by_key[1] == g)) for g in range(30)} == {
        tuple(np.flatnonzero(by_value[1] == g)) for g in range(30)
    }
