"""Learning-rate schedules of the paper (Sec. III, Fig. 2), as pure functions of the iteration.

Pure functions of (iteration, state) make a resumed run reproduce the schedule exactly.

- ``none``: constant ``lr``.
- ``step``: halve every ``step_epochs`` epochs (LRStep).
- ``loss-step``: halve each time an epoch's training loss does not improve (LossStep); the
  halvings are counted by the trainer and passed in as ``loss_halvings``.
- ``cosine``: Eq. (4), eta_t = lr/2 * (1 + cos(pi t / T)), t the minibatch iteration and
  T = ``cosine_period_epochs`` epochs of iterations, eta_min 0. Like the reference code's
  ``CosineAnnealingLR`` stepped past ``T_max``, the rate falls to 0 over T iterations and
  is then boosted back to ``lr`` over the next T: the periodic boost the paper studies.
"""

from __future__ import annotations

import math

from qsnn_deploy.training.config import TrainConfig


def learning_rate(cfg: TrainConfig, iteration: int, iters_per_epoch: int, loss_halvings: int = 0) -> float:
    """Learning rate for minibatch ``iteration`` (0-based, counted over the whole run)."""
    if cfg.schedule == "none":
        return cfg.lr
    if cfg.schedule == "step":
        return cfg.lr * 0.5 ** (iteration // (cfg.step_epochs * iters_per_epoch))
    if cfg.schedule == "loss-step":
        return cfg.lr * 0.5**loss_halvings
    period = cfg.cosine_period_epochs * iters_per_epoch
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * iteration / period))
