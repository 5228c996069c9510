"""The CPU's instruction sets from /proc/cpuinfo text: x86 with VNNI, with AMX, Arm, none."""

from __future__ import annotations

from slimline.core.cpu import cpu_info, describe, parse_cpuinfo

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16

processor\t: 1
model name\t: something else
flags\t\t: fpu
"""
XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: avx2 avx512f avx512_vnni avx_vnni amx_bf16 amx_tile amx_int8
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp asimddp sve i8mm bf16
CPU implementer\t: 0x41
"""


def test_an_epyc_with_avx512_vnni_and_no_amx():
    info = parse_cpuinfo(EPYC)
    assert info["model"] == "AMD EPYC 9B14"  # the first processor's block only
    assert info["instruction_sets"] == {
        "AVX2": True, "AVX-512F": True, "AVX-512 VNNI": True, "AVX-VNNI": False,
        "AMX-INT8": False, "AMX-BF16": False,
    }  # fmt: skip
    assert describe(info) == (
        "AMD EPYC 9B14: AVX2, AVX-512F, AVX-512 VNNI (not AVX-VNNI, AMX-INT8, AMX-BF16)"
    )


def test_a_xeon_with_amx_has_every_set():
    info = parse_cpuinfo(XEON)
    assert all(info["instruction_sets"].values())
    assert describe(info).endswith("AMX-INT8, AMX-BF16")


def test_arm_features_line():
    sets = parse_cpuinfo(GRAVITON)["instruction_sets"]
    assert sets == {"NEON": True, "dot product": True, "I8MM": True, "SVE": True}


def test_no_flags_or_no_file_is_unknown(tmp_path):
    assert parse_cpuinfo("processor\t: 0\nmodel name\t: odd\n") == {
        "model": "odd", "instruction_sets": "unknown"
    }  # fmt: skip
    info = cpu_info(tmp_path / "absent")
    assert info["instruction_sets"] == "unknown"
    assert describe(info).endswith(": instruction sets unknown")
