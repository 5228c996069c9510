"""Olive user script (imported by Olive in bench/.venv-olive, never by slimline).

Registers the calibration set that bench/peers.py wrote: the same stratified train samples
slimline's quantize stage calibrates with, one `{"input": (1, 8, 8)}` sample at a time
(Olive's dataloader batches them; its calibration reader wants dict batches).
"""

import numpy as np
from olive.data.registry import Registry


@Registry.register_dataset()
def slimline_calibration(data_path: str, **kwargs):
    with np.load(data_path, allow_pickle=False) as z:
        x = z["x"]
    return [({"input": x[i]}, 0) for i in range(len(x))]  # labels are unused by calibration
