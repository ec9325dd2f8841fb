"""Freeze is proven right by convergence: with a wide state and decay, integer == float spikes."""

import numpy as np
import pytest
import torch

from qsnn_deploy.app.parity import run_parity
from qsnn_deploy.errors import TargetError
from qsnn_deploy.frontends.torch_qat import freeze
from qsnn_deploy.ir import LIF, Conv2d, Linear
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.targets import load_target
from qsnn_deploy.training.config import ModelConfig
from qsnn_deploy.training.model import QSNN

INT4 = load_target("int4-core")
#: wide enough that the integer arithmetic is finer than float64's rounding of the float model
WIDE = INT4.with_changes(state=IntType(48), accumulator=IntType(48), decay_shift=30)


def _random_qat_model(seed: int, timesteps: int = 30, negative_gain: bool = False) -> QSNN:
    torch.manual_seed(seed)
    model = QSNN(ModelConfig(timesteps=timesteps, threshold=1.0, beta=0.9))
    with torch.no_grad():
        for bn in model.bns:
            bn.weight.uniform_(0.5, 1.5)
            if negative_gain:
                bn.weight[::3] *= -1
            bn.bias.uniform_(-0.3, 0.6)
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.002, 0.02)
    return model.eval()


def _inputs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 1, 28, 28)) ** 2 * 256).astype(np.uint8)
    return x, rng.integers(0, 10, n)


@pytest.mark.parametrize("seed,negative_gain", [(0, False), (1, True), (2, False)])
def test_wide_integer_deployment_converges_to_float_model(seed, negative_gain):
    model = _random_qat_model(seed, negative_gain=negative_gain)
    graph = freeze(model, WIDE)
    x, y = _inputs(48, seed)
    report = run_parity(model.double(), graph, x, y, target=WIDE, batch_size=48, progress=False)
    doc = report.to_json()
    assert doc["layers"][0]["spikes_float"] > 0 and doc["layers"][-1]["spikes_float"] > 0, "test needs spiking layers"
    assert doc["identical_output_share"] >= 0.99, doc
    assert doc["prediction_agreement"] == 1.0


def test_int4_core_widths_are_measured_not_assumed():
    """At the target's own 24-bit state the agreement is high but need not be exact."""
    model = _random_qat_model(3)
    graph = freeze(model, INT4)
    x, y = _inputs(32, 3)
    doc = run_parity(model, graph, x, y, target=INT4, batch_size=32, progress=False).to_json()
    assert all(layer["spike_agreement"] > 0.98 for layer in doc["layers"]), doc
    assert doc["prediction_agreement"] >= 0.9
    assert sum(layer["saturations"] for layer in doc["layers"]) == 0  # F is chosen so the state cannot overflow


def test_freeze_structure_and_folding():
    model = _random_qat_model(4, negative_gain=True)
    graph = freeze(model, INT4)
    ops = [node.op for _, node in graph.chain()]
    assert ops == ["Input", "Conv2d", "SumPool2d", "LIF", "Conv2d", "SumPool2d", "LIF", "Flatten", "Linear", "LIF", "Output"]
    conv1 = graph.nodes["conv1"]
    assert isinstance(conv1, Conv2d) and conv1.weight.dtype == INT4.weight
    w_int = model.convs[0].quant_weight().int().numpy()
    gain = model.bns[0].weight.detach().numpy()
    flipped = gain < 0
    assert flipped.any()
    np.testing.assert_array_equal(conv1.weight.values[flipped], -w_int[flipped])
    np.testing.assert_array_equal(conv1.weight.values[~flipped], w_int[~flipped])
    for _, lif in graph.lif_layers():
        assert isinstance(lif, LIF) and lif.state == INT4.state
        assert lif.decay_mul == round(0.9 * 2**16) and lif.decay_shift == 16
    assert isinstance(graph.nodes["fc"], Linear)


def test_float_model_is_refused():
    model = QSNN(ModelConfig(weight_bits=32, timesteps=5)).eval()
    with pytest.raises(TargetError, match="float weights"):
        freeze(model, INT4)


def test_weights_beyond_target_type_are_refused():
    model = QSNN(ModelConfig(weight_bits=6, timesteps=5)).eval()
    with pytest.raises(TargetError, match="beyond target weight type INT4_NARROW"):
        freeze(model, INT4)


def test_zero_bn_gain_is_refused():
    model = _random_qat_model(5)
    with torch.no_grad():
        model.bns[1].weight[7] = 0.0
    with pytest.raises(TargetError, match="zero BN scale"):
        freeze(model, INT4)
