"""The compression library: data sources and their GX suite, model families, training with KD
losses, pruning, quantization, ONNX I/O, evaluation, gates, benchmark, bundle and predict.
Knows nothing of DVC, Prefect or MLflow; imports only `slimline.core`."""
