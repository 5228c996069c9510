"""DVC stage benchmark: every variant through onnxruntime, same inputs, interleaved.

What is measured, the speed-up gate and what the report and the page say are
`compression.release.benchmark`'s; this stage writes reports/benchmark.json, reports/benchmark.md,
the trade-off plot and the final model's confusion matrix, all or nothing.
"""

import logging
from pathlib import Path

from slimline.compression.data.store import load_split
from slimline.compression.release.benchmark import run_benchmark
from slimline.compression.release.latency import tradeoff_plot
from slimline.compression.scores import plot_confusion
from slimline.core.atomic import atomic_paths, write_json
from slimline.core.params.schema import Params
from slimline.core.stage import run_stage

log = logging.getLogger("slimline")


def main(params: Params, root: Path) -> str:
    paths = params.paths
    test = load_split(root / paths.prepared, "test", lazy=True)
    bench = run_benchmark(params, root, test)
    targets = [root / p for p in (paths.benchmark_report, paths.benchmark_table,
                                  paths.tradeoff_plot, paths.confusion_plot)]  # fmt: skip
    with atomic_paths(targets) as (report_tmp, table_tmp, tradeoff_tmp, confusion_tmp):
        write_json(report_tmp, bench.report())
        table_tmp.write_text(bench.page())
        tradeoff_plot(bench.variants, tradeoff_tmp)
        plot_confusion(bench.confusion, test.class_names, confusion_tmp)
    if bench.cpu_warning:
        log.warning("warning: %s", bench.cpu_warning)
    return bench.summary()


if __name__ == "__main__":
    run_stage("benchmark", main)
