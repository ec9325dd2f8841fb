import os
import sys

os.environ.setdefault("QSNN_DEPLOY_NO_REEXEC", "1")
# The tests mirror the package (tests/ir, tests/sim, ...); their shared support modules
# (graph_factory, oracles, idx_files, xylo_adapter, xylo_graphs) live here at the top.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture(scope="module")
def base_state() -> dict[str, Any]:
    """The state dict of the tiny model (T = 4), seeded; shared by a test module."""
    import torch

    from qsnn_deploy.training.checkpoint import model_state
    from qsnn_deploy.training.config import ModelConfig
    from qsnn_deploy.training.model import QSNN

    torch.manual_seed(0)
    return model_state(QSNN(ModelConfig(timesteps=4)))


@pytest.fixture
def make_ckpt(tmp_path, base_state):
    """Write a checkpoint of the tiny model, optionally edited; returns its path."""
    from qsnn_deploy.training.checkpoint import Checkpoint, model_state, save_checkpoint
    from qsnn_deploy.training.config import ModelConfig
    from qsnn_deploy.training.model import QSNN

    def make(name: str = "model.pt", *, config: ModelConfig | None = None, edit: Any = None) -> Path:
        cfg = config or ModelConfig(timesteps=4)
        state = {k: v.clone() for k, v in base_state.items()} if config is None else model_state(QSNN(cfg))
        if edit is not None:
            edit(state)
        return save_checkpoint(Checkpoint(cfg, state), tmp_path / "in" / name)

    return make
