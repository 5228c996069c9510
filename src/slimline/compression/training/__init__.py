"""Training: the fit loop and its batches, the device, distillation, structured pruning, QAT."""
