"""How an input sample presents itself over time: one vocabulary for the IR's ``Input``, the data
splits and the model configs (a leaf module like :mod:`qsnn_deploy.errors`, so every layer can use it).

- ``static``: one sample (an image ``(C, H, W)``) applied unchanged at every step.
- ``frames``: one input per step, a sample is ``(T, *shape)``: DVS event frames ``(T, C, H, W)``,
  image rows as steps, per-step event-count vectors ``(T, C)``.
"""

from __future__ import annotations

STATIC = "static"
FRAMES = "frames"
ENCODINGS: tuple[str, ...] = (STATIC, FRAMES)

__all__ = ["ENCODINGS", "FRAMES", "STATIC"]
