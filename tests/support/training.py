"""A model that has learned something, in seconds."""

from __future__ import annotations

import numpy as np


def quick_train(model, x: np.ndarray, y: np.ndarray, epochs: int):
    """A few epochs of Adam (lr 0.01, batches of 100, in order) for tests that need a model that
    has learned something; one thread: on a busy 2-core machine, 2 OpenMP threads spin at
    barriers (3 s became 16 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    try:
        for _ in range(epochs):
            for i in range(0, len(x), 100):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xt[i : i + 100]), yt[i : i + 100])
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()
