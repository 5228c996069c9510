"""Release: the gates, the variant that ships, latency, the bundle, the model stages'
outputs, `slimline predict`, and the checks before a run."""
