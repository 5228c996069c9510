from pathlib import Path

import numpy as np
import pytest
import yaml

from slimline.core.params.loading import ParamsError, load_params, write_params
from slimline.core.params.overrides import to_flat_dict
from tests.support.params import write_params as make_params
from tests.support.paths import ROOT


def problems(tmp_path: Path, overrides: list[str], **sections) -> list[str]:
    path = make_params(tmp_path / "params.yaml", **sections)
    with pytest.raises(ParamsError) as info:
        load_params(path, overrides)
    return info.value.problems


def test_project_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.teacher.arch == "resnet"
    assert params.paths.prepared == "data/prepared"
    assert params.gates.min_compression == 50


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("teacher.lr=-1", "teacher.lr: greater than 0 (got -1)"),
        ("student.epochs=0", "student.epochs: greater than or equal to 1 (got 0)"),
        ("distill.temperature=0", "distill.temperature: greater than 0 (got 0)"),
        ("distill.alpha=1.5", "distill.alpha: less than or equal to 1 (got 1.5)"),
        ("prune.ratio=1.0", "prune.ratio: less than 1 (got 1.0)"),
        ("data.test_fraction=0", "data.test_fraction: greater than 0 (got 0)"),
        ("gates.min_accuracy=1.2", "gates.min_accuracy: less than or equal to 1 (got 1.2)"),
        ("quantize.mode=fast", "quantize.mode: 'auto', 'static' or 'dynamic' (got 'fast')"),
        (
            "teacher.arch=vit",
            "teacher.arch: 'mlp', 'cnn', 'resnet', 'transformer', 'textcnn' or 'boe' (got 'vit')",
        ),
    ],
)
def test_out_of_range_values_name_field_and_value(tmp_path, override, expected):
    assert expected in problems(tmp_path, [override])


def test_unknown_key_suggests_closest(tmp_path):
    assert problems(tmp_path, ["distill.temprature=3"]) == [
        "distill.temprature: unknown key; did you mean 'temperature'?"
    ]
    assert "unknown key; expected one of: seed, threads" in problems(tmp_path, ["zzz=1"])[0]


def test_every_problem_reported_at_once(tmp_path):
    found = problems(
        tmp_path, ["teacher.lr=-1", "distill.temperature=0", "distill.alpha=1.5", "prune.ratio=1"]
    )
    assert [p.split(":")[0] for p in found] == [
        "teacher.lr",
        "distill.temperature",
        "distill.alpha",
        "prune.ratio",
    ]


def test_splits_must_leave_a_train_split(tmp_path):
    found = problems(tmp_path, ["data.val_fraction=0.5", "data.test_fraction=0.45"])
    assert found == [
        "data.val_fraction: val_fraction + test_fraction below 0.9, leaving a train split "
        "(got 0.5 + 0.45)"
    ]


@pytest.mark.parametrize("source", ["npz", "image-folder"])
def test_path_required_for_file_sources(tmp_path, source):
    found = problems(tmp_path, [f"data.source={source}", "data.path="])
    assert found == [f"data.path: a file or folder for source {source!r} (got None)"]


def test_static_quantization_needs_calibration(tmp_path):
    found = problems(tmp_path, ["quantize.calibration_samples=0"])
    assert "or set mode: dynamic" in found[0]
    path = make_params(tmp_path / "ok.yaml")
    assert load_params(path, ["quantize.calibration_samples=0", "quantize.mode=dynamic"])


def test_conv_arch_on_tabular_npz_is_a_params_error(tmp_path):
    np.savez(tmp_path / "tab.npz", x=np.zeros((30, 5), np.float32), y=np.arange(30) % 3)
    found = problems(tmp_path, ["data.source=npz", "data.path=tab.npz", "student.arch=mlp"])
    assert found == ["teacher.arch: mlp for tabular (N, F) data in tab.npz (got 'resnet')"]


def test_table_source_needs_a_target_column(tmp_path):
    found = problems(tmp_path, ["data.source=table", "data.path=d.csv", "teacher.arch=mlp",
                                "student.arch=mlp"])  # fmt: skip
    assert found == ["data.target: the table's label column, for source 'table' (got None)"]
    ok = make_params(tmp_path / "ok.yaml", teacher={"arch": "mlp"}, student={"arch": "mlp"})
    params = load_params(ok, ["data.source=table", "data.path=d.csv", "data.target=label"])
    assert params.data.target == "label"


def test_target_is_an_error_for_other_sources(tmp_path):
    found = problems(tmp_path, ["data.source=npz", "data.path=d.npz", "data.target=label"])
    assert found == [
        "data.target: only for sources 'table' and 'text'; leave it null for source 'npz' (got "
        "'label')"
    ]
    assert problems(tmp_path, ["data.target=label"])[0].startswith("data.target: only for")


def test_table_source_is_tabular_so_conv_archs_are_params_errors(tmp_path):
    # the file need not exist: a table is (N, F) rows whatever it holds
    found = problems(tmp_path, ["data.source=table", "data.path=d.csv", "data.target=label"])
    assert found == [
        "teacher.arch: mlp for tabular (N, F) data in d.csv (got 'resnet')",
        "student.arch: mlp for tabular (N, F) data in d.csv (got 'cnn')",
    ]


def test_paths_cannot_escape_the_project(tmp_path):
    found = problems(tmp_path, ["paths.teacher=../../etc/x.pt", "paths.dist=/tmp/dist"])
    assert "paths.teacher: a relative path inside the project (got '../../etc/x.pt')" in found
    assert "paths.dist: a relative path inside the project (got '/tmp/dist')" in found


def test_paths_cannot_name_the_project_root_or_its_own_files(tmp_path):
    found = problems(tmp_path, ["paths.teacher_metrics=params.yaml", "paths.prepared=src/p",
                                "paths.dist=.", "paths.teacher=models/teacher.pt"])  # fmt: skip
    assert [p.split(":")[0] for p in found] == ["paths.prepared", "paths.teacher_metrics",
                                                "paths.dist"]  # fmt: skip
    assert "not the project root or one of its files and source folders" in found[0]


def test_text_takes_the_text_families_and_they_nothing_else(tmp_path):
    text = ["data.source=text", "data.path=t.csv", "data.target=label"]
    assert problems(tmp_path, text) == [
        "teacher.arch: transformer, textcnn, boe for text (token ids) data (got 'resnet')",
        "student.arch: transformer, textcnn, boe for text (token ids) data (got 'cnn')",
    ]
    assert problems(tmp_path, ["student.arch=boe"]) == [
        "student.arch: 'boe' reads token ids; it needs data.source: text (got data.source 'digits')"
    ]
    assert problems(tmp_path, [*text, "teacher.arch=boe", "student.arch=boe", "data.layout=image"])
    assert problems(tmp_path, ["data.tokenizer=t.json"])[0].startswith("data.tokenizer: only for")


def test_quantize_mode_auto_is_dynamic_for_text_and_static_otherwise(tmp_path):
    path = make_params(tmp_path / "p.yaml")
    assert load_params(path).quantize.mode == "static"
    text = ["data.source=text", "data.path=t.csv", "data.target=label", "teacher.arch=transformer",
            "student.arch=boe"]  # fmt: skip
    params = load_params(path, text)
    assert params.quantize.mode == "dynamic"
    assert (params.student.width, params.student.depth) == (12, 1)  # sized for the family
    assert load_params(path, [*text, "quantize.mode=static"]).quantize.mode == "static"


def test_data_shape_rule_is_reported_with_other_problems(tmp_path):
    np.savez(tmp_path / "tab.npz", x=np.zeros((30, 5), np.float32), y=np.arange(30) % 3)
    found = problems(tmp_path, ["data.source=npz", "data.path=tab.npz", "teacher.lr=-1"])
    assert found == [
        "teacher.lr: greater than 0 (got -1)",
        "teacher.arch: mlp for tabular (N, F) data in tab.npz (got 'resnet')",
        "student.arch: mlp for tabular (N, F) data in tab.npz (got 'cnn')",
    ]


def test_missing_section_and_bad_files(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["student"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match="student: required section or field is missing"):
        load_params(tmp_path / "p.yaml")
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("seed: [1,\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    with pytest.raises(ParamsError, match="key=value"):
        load_params(ROOT / "params.yaml", ["prune.ratio"])


def test_overrides_are_parsed_as_yaml_and_flattened():
    params = load_params(ROOT / "params.yaml", ["prune.ratio=0.3", "quantize.per_channel=false"])
    flat = to_flat_dict(params)
    assert flat["prune.ratio"] == 0.3
    assert flat["quantize.per_channel"] is False
    assert params.digest() != load_params(ROOT / "params.yaml").digest()


def test_null_width_and_depth_are_the_familys_default_for_the_role():
    from slimline.core.params.models import MODEL_SIZES, ModelSpec

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert raw["teacher"]["width"] is None and raw["student"]["depth"] is None
    params = load_params(ROOT / "params.yaml")  # resnet teacher, cnn student: the digits sizes
    assert (params.teacher.width, params.teacher.depth) == MODEL_SIZES["teacher"]["resnet"]
    assert (params.student.width, params.student.depth) == MODEL_SIZES["student"]["cnn"]
    assert MODEL_SIZES["teacher"]["resnet"] == (40, 2) and MODEL_SIZES["student"]["cnn"] == (32, 3)
    # switching arch alone switches the sizes; the resolved numbers are what is recorded
    mlp = load_params(ROOT / "params.yaml", ["teacher.arch=mlp", "student.arch=mlp"])
    assert (mlp.teacher.width, mlp.teacher.depth) == (512, 3)
    assert (mlp.student.width, mlp.student.depth) == (32, 2)
    assert to_flat_dict(mlp)["teacher.width"] == 512
    # a number given is kept, and only the null one is filled in
    mixed = load_params(ROOT / "params.yaml", ["teacher.arch=mlp", "teacher.width=100"])
    assert (mixed.teacher.width, mixed.teacher.depth) == (100, 3)
    spec = ModelSpec(arch="cnn", depth=5, epochs=1, lr=0.1, batch_size=1)
    assert spec.size("teacher") == (128, 5) and spec.size("student") == (32, 5)
    assert "teacher.width" in "\n".join(problems_of(["teacher.width=1"]))


def problems_of(overrides: list[str]) -> list[str]:
    with pytest.raises(ParamsError) as info:
        load_params(ROOT / "params.yaml", overrides)
    return info.value.problems


def test_write_params_keeps_comments_and_applies_overrides(tmp_path):
    target = tmp_path / "params.yaml"
    write_params(target, ROOT / "params.yaml", ["prune.ratio=0.25"])
    text = target.read_text()
    assert "# per-layer channel ratio" in text
    assert load_params(target).prune.ratio == 0.25


def signal_npz(tmp_path: Path, shape: tuple[int, ...]) -> str:
    np.savez(tmp_path / "sig.npz", x=np.zeros(shape, np.float32), y=np.arange(shape[0]) % 3)
    return "data.path=sig.npz"


@pytest.mark.parametrize("shape", [(30, 64), (30, 2, 64)])
def test_signal_layout_feeds_every_family(tmp_path, shape):
    path = make_params(tmp_path / "params.yaml")
    overrides = ["data.source=npz", signal_npz(tmp_path, shape), "data.layout=signal"]
    params = load_params(path, overrides)  # resnet teacher, cnn student: 1-D convs
    assert params.data.layout == "signal"
    assert load_params(path, [*overrides, "student.arch=mlp"]).student.arch == "mlp"


@pytest.mark.parametrize(
    ("layout", "shape", "expected"),
    [
        ("signal", (30, 1, 8, 8), "data.layout: signal reads x as (N, L) or (N, C, L) "
                                  "(got x of shape (30, 1, 8, 8) in sig.npz)"),
        ("image", (30, 64), "data.layout: image reads x as (N, H, W) or (N, C, H, W) "
                            "(got x of shape (30, 64) in sig.npz)"),
        ("tabular", (30, 2, 64), "data.layout: tabular reads x as (N, F) "
                                 "(got x of shape (30, 2, 64) in sig.npz)"),
        ("auto", (30, 2, 2, 2, 2), "data.layout: auto reads x as (N, F), (N, H, W) or "
                                   "(N, C, H, W) (got x of shape (30, 2, 2, 2, 2) in sig.npz)"),
    ],
)  # fmt: skip
def test_layout_errors_name_the_field_and_the_shape(tmp_path, layout, shape, expected):
    found = problems(tmp_path, ["data.source=npz", signal_npz(tmp_path, shape),
                                f"data.layout={layout}", "teacher.lr=-1"])  # fmt: skip
    assert found == ["teacher.lr: greater than 0 (got -1)", expected]


def test_tabular_layout_still_needs_an_mlp(tmp_path):
    found = problems(tmp_path, ["data.source=npz", signal_npz(tmp_path, (30, 64)),
                                "data.layout=tabular", "student.arch=mlp"])  # fmt: skip
    assert found == ["teacher.arch: mlp for tabular (N, F) data in sig.npz (got 'resnet')"]


@pytest.mark.parametrize("source", ["digits", "image-folder"])
def test_image_sources_take_only_an_image_layout(tmp_path, source):
    found = problems(tmp_path, [f"data.source={source}", "data.path=imgs", "data.layout=signal"])
    assert found == [f"data.layout: auto or image for source {source!r} (got 'signal')"]
    assert "data.layout: 'auto', 'tabular', 'signal' or 'image' (got 'audio')" in problems(
        tmp_path, ["data.layout=audio"]
    )


def test_an_onnx_teacher_needs_only_its_file_and_input(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["teacher"] = {"source": "onnx", "path": "data/pretrained/model.onnx", "input": "raw"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    teacher = load_params(tmp_path / "params.yaml").teacher
    assert (teacher.source, teacher.path, teacher.input) == (
        "onnx",
        "data/pretrained/model.onnx",
        "raw",
    )


@pytest.mark.parametrize(
    ("teacher", "expected"),
    [
        (
            {"source": "onnx"},
            "teacher.path: an .onnx file for source 'onnx' (got 'data/pretrained')",
        ),
        ({"source": "train", "input": "raw"}, "teacher.input: only for source 'onnx'"),
        ({"source": "keras"}, "teacher.source: 'train' or 'onnx' (got 'keras')"),
        ({"input": "standardized"}, "teacher.input: 'prepared' or 'raw' (got 'standardized')"),
    ],
)
def test_teacher_source_rules_name_the_field(tmp_path, teacher, expected):
    with pytest.raises(ParamsError) as e:
        load_params(make_params(tmp_path / "params.yaml", teacher=teacher))
    assert expected in str(e.value)


def test_device_precision_and_augment_are_checked(tmp_path):
    params = load_params(make_params(tmp_path / "params.yaml", device="cpu", precision="bf16",
                                     data={"augment": "crop_flip"}))  # fmt: skip
    assert (params.device, params.precision, params.data.augment) == ("cpu", "bf16", "crop_flip")
    with pytest.raises(ParamsError) as e:
        load_params(make_params(tmp_path / "p2.yaml", device="tpu", precision="fp8"))
    assert "device: 'auto', 'cpu' or 'cuda' (got 'tpu')" in str(e.value)
    assert "precision: 'fp32' or 'bf16' (got 'fp8')" in str(e.value)


def test_augmentation_is_for_images_only(tmp_path):
    np.savez(tmp_path / "sig.npz", x=np.zeros((30, 2, 50), np.float32), y=np.arange(30) % 3)
    data = {"source": "npz", "path": "sig.npz", "layout": "signal", "augment": "crop"}
    with pytest.raises(ParamsError) as e:
        load_params(make_params(tmp_path / "params.yaml", data=data))
    assert "data.augment: none for signal data (crops and flips are for images; got 'crop')" in (
        str(e.value)
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", "loader_workers: greater than or equal to 0 (got -1)"),
        ("65", "loader_workers: less than or equal to 64 (got 65)"),
        ("two", "loader_workers: a valid integer (got 'two')"),
        ("1.5", "loader_workers: a valid integer (got 1.5)"),
        ("true", "loader_workers: a valid integer (got True)"),  # a flag is not a count
        ("", "loader_workers: a valid integer (got None)"),
    ],
)
def test_loader_workers_is_a_count_of_processes(tmp_path, value, expected):
    assert problems(tmp_path, [f"loader_workers={value}"]) == [expected]


def test_loader_workers_defaults_to_reading_in_the_training_process(tmp_path):
    assert load_params(ROOT / "params.yaml").loader_workers == 0
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["loader_workers"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    assert load_params(tmp_path / "p.yaml").loader_workers == 0
    assert load_params(tmp_path / "p.yaml", ["loader_workers=4"]).loader_workers == 4
    assert to_flat_dict(load_params(tmp_path / "p.yaml"))["loader_workers"] == 0


def test_relative_data_paths_are_checked_from_the_project_the_stages_run_in(tmp_path):
    # `slimline run --params elsewhere/x.yaml` runs the stages in the project: a data path in
    # that file means the project's file, not one beside the params file
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "data").mkdir(parents=True)
    elsewhere.mkdir()
    np.savez(project / "data/table.npz", x=np.zeros((30, 4), np.float32), y=np.arange(30) % 3)
    params = make_params(
        elsewhere / "x.yaml",
        data={"source": "npz", "path": "data/table.npz"},
        teacher={"arch": "cnn"},
    )
    load_params(params)  # beside the file there is no data to check
    with pytest.raises(ParamsError, match=r"teacher.arch: mlp for tabular \(N, F\) data"):
        load_params(params, base=project)
