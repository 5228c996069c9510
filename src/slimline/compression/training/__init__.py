"""Training: the fit loop and its batches, the setup every training call shares, the device,
distillation and the distill stage's students, structured pruning, QAT."""
