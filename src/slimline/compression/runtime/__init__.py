"""The ONNX side: export, inference sessions, INT8 / INT4 quantization with onnxruntime,
calibration, sensitivity, graph compaction, the CPUs an INT8 model is right on."""
