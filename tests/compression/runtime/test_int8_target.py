"""quantize.target: which INT8 format each target picks on which CPU, and the warning a
native model gives on a CPU without the instruction set it was made for."""

from __future__ import annotations

import json

from slimline.compression.runtime.int8_target import choose, warning

NONE = dict.fromkeys(
    ("AVX2", "AVX-512F", "AVX-512 VNNI", "AVX-VNNI", "AMX-INT8", "AMX-BF16"), False
)
AVX2 = {"model": "AMD EPYC", "instruction_sets": NONE | {"AVX2": True}}
AVX512 = {"model": "Xeon Skylake", "instruction_sets": NONE | {"AVX2": True, "AVX-512F": True}}
VNNI = {"model": "AMD EPYC 9B14",
        "instruction_sets": AVX512["instruction_sets"] | {"AVX-512 VNNI": True}}  # fmt: skip
AMX = {"model": "Xeon 8481C", "instruction_sets": dict.fromkeys(NONE, True)}
UNREADABLE = {"model": "arm64", "instruction_sets": "unknown"}


def test_portable_is_u8u8_on_every_cpu_and_needs_nothing():
    for cpu in (AVX2, AVX512, VNNI, AMX, UNREADABLE):
        fmt = choose("portable", cpu)
        assert (fmt.weight_type, fmt.reduce_range, fmt.requires) == ("QUInt8", False, ())
        assert fmt.weight_grid == (0, 255)
        assert warning(fmt.metadata(), cpu) is None


def test_native_takes_8_bit_u8s8_only_where_it_is_exact():
    assert choose("native", VNNI).requires == ("AVX-512 VNNI",)
    assert choose("native", AMX).requires == ("AVX-512 VNNI", "AVX-VNNI", "AMX-INT8")
    for cpu in (VNNI, AMX):
        fmt = choose("native", cpu)
        assert (fmt.weight_type, fmt.reduce_range, fmt.weight_grid) == ("QInt8", False, (-127, 127))
    # no VNNI (AVX2, plain AVX-512): 7-bit weights, which no CPU saturates
    for cpu in (AVX2, AVX512, UNREADABLE):
        fmt = choose("native", cpu)
        assert (fmt.reduce_range, fmt.requires, fmt.weight_grid) == (True, (), (-64, 64))


def test_a_native_vnni_model_warns_on_a_cpu_without_vnni_or_amx():
    meta = choose("native", VNNI).metadata()
    assert json.loads(meta["int8_requires"]) == ["AVX-512 VNNI"]
    assert warning(meta, VNNI) is None and warning(meta, AMX) is None
    for cpu in (AVX2, AVX512, UNREADABLE):
        said = warning(meta, cpu)
        assert said is not None and "AVX-512 VNNI" in said and "quantize.target portable" in said
    # a model without the keys (FP32, INT4, made before targets) warns nowhere
    assert warning({}, AVX2) is None


def test_the_report_names_the_format_and_no_machine_for_portable():
    report = choose("portable", VNNI).report()
    assert report == {
        "target": "portable", "activation_type": "QUInt8", "weight_type": "QUInt8",
        "reduce_range": False, "requires": [], "runs_on": "any x86-64 CPU (U8U8: int32 sums)",
    }  # fmt: skip
