"""The CPU's instruction sets that decide which onnxruntime kernels a model gets.

At slimline's sizes INT8 is not always faster than FP32, and the ranking moves with the CPU:
VNNI (AVX-512 or AVX) and AMX give onnxruntime fused INT8 dot products, plain AVX2 does not.
The benchmark and a latency-driven export print these beside their timings. Read from
/proc/cpuinfo (Linux); elsewhere, and on a file that names no flags, the sets are "unknown".
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# label: the kernel's flag name. x86 lists them on a `flags` line, Arm on `Features`.
X86 = {
    "AVX2": "avx2",
    "AVX-512F": "avx512f",
    "AVX-512 VNNI": "avx512_vnni",
    "AVX-VNNI": "avx_vnni",
    "AMX-INT8": "amx_int8",
    "AMX-BF16": "amx_bf16",
}
ARM = {"NEON": "asimd", "dot product": "asimddp", "I8MM": "i8mm", "SVE": "sve"}
UNKNOWN = "unknown"


def parse_cpuinfo(text: str) -> dict:
    """`{"model", "instruction_sets": {label: bool}}` from /proc/cpuinfo's text (its first
    processor: they are alike), or `"instruction_sets": "unknown"` when it names no flags."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # end of the first processor's block
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    model = fields.get("model name") or platform.machine() or UNKNOWN
    for key, table in (("flags", X86), ("features", ARM)):
        if key in fields:
            flags = set(fields[key].split())
            return {"model": model, "instruction_sets": {k: f in flags for k, f in table.items()}}
    return {"model": model, "instruction_sets": UNKNOWN}


def cpu_info(path: Path = CPUINFO) -> dict:
    """This machine's CPU model and instruction sets (`parse_cpuinfo`)."""
    try:
        return parse_cpuinfo(path.read_text())
    except OSError:  # not Linux: no portable source is installed
        return {"model": platform.processor() or platform.machine() or UNKNOWN,
                "instruction_sets": UNKNOWN}  # fmt: skip


def describe(info: dict) -> str:
    """`AMD EPYC 9B14: AVX2, AVX-512F, AVX-512 VNNI (not AVX-VNNI, AMX-INT8, AMX-BF16)`."""
    sets = info["instruction_sets"]
    if not isinstance(sets, dict):
        return f"{info['model']}: instruction sets {UNKNOWN}"
    has = [k for k, v in sets.items() if v]
    lacks = [k for k, v in sets.items() if not v]
    return f"{info['model']}: {', '.join(has) or 'none of ' + ', '.join(sets)}" + (
        f" (not {', '.join(lacks)})" if lacks and has else ""
    )
