"""Models: the families, their size known before training, checkpoints, and the teacher
(trained here or imported from ONNX)."""
