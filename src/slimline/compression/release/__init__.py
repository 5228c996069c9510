"""Release: the gates, the variant that ships, latency and the benchmark report, the bundle, the
model stages' outputs, the pruned model's QAT for the quantize stage, `slimline predict`, and
the checks before a run."""
