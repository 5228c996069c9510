"""Train-time augmentation of image batches: random crop with padding, horizontal flip.

Applied to training batches only, never to val or test, and drawn from a seeded generator of
its own, so a rerun sees the same views. The batch is standardized already, so the zero
padding is the channel mean. With augmentation on, distillation uses the teacher's logits of
the augmented view (online KD): a cache of clean-view logits would teach the wrong targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# data.augment -> (crop padding in pixels, flip)
MODES: dict[str, tuple[int, bool]] = {"crop": (4, False), "crop_flip": (4, True)}


@dataclass(frozen=True)
class Augment:
    pad: int = 4  # the crop window moves up to this many pixels each way
    flip: bool = True  # mirror half the images left-right (for classes that allow it)

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """A randomly cropped (and flipped) view of the images x (B, C, H, W)."""
        b, _, h, w = x.shape
        p = min(self.pad, h // 2, w // 2)  # an 8x8 digit keeps most of itself
        if p:
            padded = F.pad(x, (p, p, p, p))
            dy, dx = torch.randint(0, 2 * p + 1, (2, b), generator=gen)
            rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
            cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
            batch = torch.arange(b)[:, None, None]
            # (B, H, W, C): each image's own window of the padded batch
            x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
        if self.flip:
            mirror = torch.rand(b, generator=gen) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
        return x.contiguous()


def from_mode(mode: str) -> Augment | None:
    """The augmentation `data.augment` names; None for `none`."""
    if mode not in MODES:
        return None
    pad, flip = MODES[mode]
    return Augment(pad, flip)
