"""Models saved by the reference code (jeshraghian/QSNNs) import bit-exactly; the public API.

The reference networks are rebuilt here from the reference code's ``{fmnist,mnist,dvs}/Net.py``
(same module names, same per-step forward, torchvision ``ToTensor`` input scaling) and saved
as its early-stopping class does, ``torch.save(net.state_dict(), path)``. qsnn-deploy must load
each file and produce the same spikes at every step, in every layer.
"""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import qsnn_deploy as qd

ROOT = Path(__file__).resolve().parents[2]
T = 100


class ReferenceNet(nn.Module):
    """The reference code's Net (fmnist/mnist: static images; dvs: frames x[step]), recording every layer."""

    def __init__(self, config, in_channels=1, channels=(16, 64), classes=10, frames=False):
        import brevitas.nn as qnn
        import snntorch as snn
        from snntorch import surrogate

        super().__init__()
        self.num_bits, self.num_steps, self.batch_norm = config["num_bits"], config["num_steps"], config["batch_norm"]
        self.frames = frames
        grad = surrogate.fast_sigmoid(config["slope"])
        quant = self.num_bits is not None
        c1, c2 = channels
        dense = c2 * ((((32 if frames else 28) - 4) // 2 - 4) // 2) ** 2
        self.conv1 = (
            qnn.QuantConv2d(in_channels, c1, 5, bias=False, weight_bit_width=self.num_bits)
            if quant
            else nn.Conv2d(in_channels, c1, 5, bias=False)
        )
        self.conv1_bn = nn.BatchNorm2d(c1)
        self.lif1 = snn.Leaky(config["beta"], threshold=config["threshold"], spike_grad=grad)
        self.conv2 = qnn.QuantConv2d(c1, c2, 5, bias=False, weight_bit_width=self.num_bits) if quant else nn.Conv2d(c1, c2, 5, bias=False)
        self.conv2_bn = nn.BatchNorm2d(c2)
        self.lif2 = snn.Leaky(config["beta"], threshold=config["threshold"], spike_grad=grad)
        self.fc1 = qnn.QuantLinear(dense, classes, bias=False, weight_bit_width=self.num_bits) if quant else nn.Linear(dense, classes)
        self.lif3 = snn.Leaky(config["beta"], threshold=config["threshold"], spike_grad=grad)
        self.dropout = nn.Dropout(config["dropout"])

    def forward(self, x):
        mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        rec = [[], [], []]
        for step in range(x.size(0) if self.frames else self.num_steps):
            cur1 = F.avg_pool2d(self.conv1(x[step] if self.frames else x), 2)
            if self.batch_norm:
                cur1 = self.conv1_bn(cur1)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = F.avg_pool2d(self.conv2(spk1), 2)
            if self.batch_norm:
                cur2 = self.conv2_bn(cur2)
            spk2, mem2 = self.lif2(cur2, mem2)
            cur3 = self.dropout(self.fc1(spk2.flatten(1)))
            spk3, mem3 = self.lif3(cur3, mem3)
            for layer, spk in zip(rec, (spk1, spk2, spk3)):
                layer.append(spk)
        return [torch.stack(r) for r in rec]


def _config(num_bits, beta, threshold, batch_norm=True):
    return {
        "num_bits": num_bits,
        "beta": beta,
        "threshold": threshold,
        "slope": 5.0,
        "num_steps": T,
        "batch_norm": batch_norm,
        "dropout": 0.1,
    }


def _trained_like(net, seed):
    """Spread the BN statistics (and the fc bias) so that every layer spikes a fair amount."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():  # weights independent of the tests run before
            p.uniform_(-1.0, 1.0).mul_(p.shape[1] ** -0.5 if p.dim() > 1 else 1.0)
        for bn in (net.conv1_bn, net.conv2_bn):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.6)
            bn.running_mean.uniform_(-0.05, 0.05)
            bn.running_var.uniform_(0.005, 0.05)
        if net.fc1.bias is not None:
            net.fc1.bias.uniform_(-0.3, 0.3)
    return net.eval()


def _fmnist_images(n=4):
    x, _ = qd.load_test_images("fmnist", limit=n)
    return x


def _to_tensor(images):
    """The reference data loader's transform (fmnist/dataloader.py) applied to uint8 images."""
    from PIL import Image
    from torchvision import transforms

    transform = transforms.Compose(
        [transforms.Resize((28, 28)), transforms.Grayscale(), transforms.ToTensor(), transforms.Normalize((0,), (1,))]
    )
    return torch.stack([transform(Image.fromarray(img[0], mode="L")) for img in images])


def _save(net, tmp_path):
    path = tmp_path / "reference.pt"
    torch.save(net.state_dict(), path)  # as the reference's EarlyStopping_acc.save_checkpoint
    return path


def _assert_same_spikes(reference, ours):
    for layer, (a, b) in enumerate(zip(reference, ours), start=1):
        assert a.shape == b.shape, (layer, a.shape, b.shape)
        differ = int((a != b).sum())
        assert differ == 0, f"lif{layer}: {differ} of {a.numel()} spike-steps differ"


def _assert_active(spikes):
    rates = [float(s.mean()) for s in spikes]
    assert all(0.005 < r < 0.95 for r in rates), f"test needs every layer spiking, rates {rates}"


def _import_and_compare(net, tmp_path, images, preset, beta, threshold):
    with torch.no_grad():
        reference = net(_to_tensor(images))
    _assert_active(reference)
    path = _save(net, tmp_path)
    for i, name in enumerate(preset):  # fmnist and mnist share the architecture; the file decides beta/threshold
        model = qd.load_model(path, preset=name)
        if i == 0:  # every layer, every step
            _assert_same_spikes(reference, model.forward_reference(torch.from_numpy(images), record=True).spikes)
        else:  # the public call: output spikes at every step
            assert torch.equal(model.spikes(images, T), reference[-1])
        # one truth: the config states the checkpoint's own neuron parameters, not the preset's
        assert (model.config.beta, model.config.threshold) == (beta, threshold)
    if len(preset) == 1:
        assert torch.equal(model.spikes(images, T), reference[-1])
    return model


def test_int4_reference_model_imports_bit_exactly_with_its_own_beta(tmp_path):
    net = _trained_like(ReferenceNet(_config(4, 0.994, 2.915)), seed=1)
    model = _import_and_compare(net, tmp_path, _fmnist_images(), ("mnist-int4", "fmnist-int4"), 0.994, 2.915)
    assert not model.config.fc_bias
    graph = qd.freeze(model)
    config = graph.metadata["model_config"]
    assert (config["beta"], config["threshold"]) == (0.994, 2.915)
    assert [layer["beta"] for layer in graph.metadata["layers"]] == pytest.approx([0.994] * 3, abs=1e-7)


def test_results_do_not_depend_on_the_input_memory_layout(tmp_path):
    """(N, 1, H, W) arrays whose channel stride is 1 or 0 (NumPy views) also read as channels-last
    to torch's conv, which then sums in another order; the model must compute as from ToTensor."""
    net = _trained_like(ReferenceNet(_config(4, 0.994, 2.915)), seed=3)
    model = qd.load_model(_save(net, tmp_path), preset="mnist-int4")
    images = np.ascontiguousarray(_fmnist_images(4))  # NumPy keeps channel stride 1 here
    as_to_tensor = torch.from_numpy(images).clone(memory_format=torch.contiguous_format)  # (784, 784, 28, 1)
    standard = model.forward_reference(as_to_tensor, record=True, timesteps=5)
    for layout in (torch.from_numpy(images), as_to_tensor.contiguous(memory_format=torch.channels_last)):
        got = model.forward_reference(layout, record=True, timesteps=5)
        assert all(torch.equal(a, b) for a, b in zip(standard.membranes, got.membranes)), layout.stride()


def test_float_reference_model_with_fc_bias_imports_bit_exactly(tmp_path):
    net = _trained_like(ReferenceNet(_config(None, 0.39, 1.47)), seed=2)
    with torch.no_grad():
        net.fc1.bias.uniform_(0.2, 1.0)  # the float net's fc1 has a bias; make it matter
    model = _import_and_compare(net, tmp_path, _fmnist_images(), ("fmnist-float",), 0.39, 1.47)
    assert model.config.fc_bias and not model.config.quantized


def test_dvs_reference_model_with_unused_bn_keys_imports_bit_exactly(tmp_path, caplog):
    net = ReferenceNet(_config(4, 0.614, 0.427, batch_norm=False), in_channels=2, channels=(16, 32), classes=11, frames=True)
    net = _trained_like(net, seed=5)
    with torch.no_grad():  # no BN to lift the currents: larger weights make every layer spike
        net.conv1.weight.mul_(2.0)
        net.conv2.weight.mul_(3.0)
        net.fc1.weight.mul_(4.0)
    assert any(k.startswith("conv1_bn.") for k in net.state_dict()), "the reference DVS net saves its unused BN layers"
    rng = np.random.default_rng(5)
    frames = (rng.random((3, 40, 2, 32, 32)) < 0.2).astype(np.uint8) * rng.integers(1, 4, (3, 40, 2, 32, 32), dtype=np.uint8)
    with torch.no_grad():
        reference = net(torch.from_numpy(frames).float().transpose(0, 1))  # the reference is time-major
    _assert_active(reference)
    with caplog.at_level("WARNING"):
        model = qd.load_model(_save(net, tmp_path), preset="dvs-int4")
    assert "unused batch-norm" in caplog.text
    assert model.bns is None
    _assert_same_spikes(reference, model.forward_reference(torch.from_numpy(frames), record=True, timesteps=40).spikes)
    assert torch.equal(model.spikes(frames, 40), reference[-1])
    # the integer graph needs no BN either
    assert qd.freeze(model).metadata["model_config"]["batch_norm"] is False


def test_fast_forward_spikes_equal_the_per_step_loop_on_real_images():
    """The fast path (parity's) may differ in float32 membranes by rounding; its spikes must not."""
    model = qd.load_model(qd.SHIPPED_MODEL)
    images = torch.from_numpy(_fmnist_images(8))
    with torch.no_grad():
        fast, slow = model(images, record=True), model.forward_reference(images, record=True)
    _assert_same_spikes(slow.spikes, fast.spikes)
    for layer, (a, b) in enumerate(zip(slow.membranes, fast.membranes), start=1):
        # docs/arithmetic.md "Fast path": measured up to 7.6e-5 in lif2 over 64 images
        assert float((a - b).abs().max()) < 2e-4, f"lif{layer}"


def test_fc_bias_freezes_into_the_last_lif_bias():
    """A QAT model with an fc bias: a wide integer deployment reproduces its float spikes."""
    from qsnn_deploy.ir.dtypes import IntType
    from qsnn_deploy.training.config import ModelConfig
    from qsnn_deploy.training.model import QSNN

    torch.manual_seed(7)
    model = _trained_like_qsnn(QSNN(ModelConfig(timesteps=30, threshold=1.0, beta=0.9, fc_bias=True)))
    wide = qd.load_target("int4-core").with_changes(state=IntType(48), accumulator=IntType(48), decay_shift=30)
    without = model.fc.bias.detach().clone()
    graph = qd.freeze(model, wide)
    rng = np.random.default_rng(7)
    x = (rng.random((32, 1, 28, 28)) ** 2 * 256).astype(np.uint8)
    doc = qd.parity(model.double(), graph, x, rng.integers(0, 10, 32), target=wide, batch_size=32, progress=False).to_json()
    assert doc["layers"][-1]["spikes_float"] > 0 and doc["identical_output_share"] >= 0.99, doc
    # the bias is in the graph: zeroing it changes the last LIF's integer bias
    with torch.no_grad():
        model.fc.bias.zero_()
    assert not np.array_equal(graph.nodes["lif3"].bias.values, qd.freeze(model, wide).nodes["lif3"].bias.values)
    assert without.abs().sum() > 0


def _trained_like_qsnn(model):
    with torch.no_grad():
        for bn in model.bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.6)
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.002, 0.02)
        model.fc.bias.uniform_(-0.5, 0.5)
    return model.eval()


def test_public_api_names_exist_and_examples_use_only_them():
    for name in ("load_model", "freeze", "export", "simulate", "parity", "SHIPPED_MODEL"):
        assert name in qd.__all__ and hasattr(qd, name), name
    assert set(qd.__all__) <= set(dir(qd))
    for example in (ROOT / "examples").rglob("*.py"):
        for node in ast.walk(ast.parse(example.read_text())):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            internal = [m for m in modules if m.startswith("qsnn_deploy.")]
            assert not internal, f"{example.name} imports internal modules {internal}; use the qsnn_deploy API"


def test_import_qsnn_deploy_stays_light():
    import subprocess
    import sys

    code = "import sys, qsnn_deploy; heavy = [m for m in ('torch', 'numpy', 'onnx', 'brevitas') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]", out


def test_checkpoints_saved_with_input_scale_load_as_the_same_divisor():
    from qsnn_deploy.training.config import ModelConfig

    assert ModelConfig.from_dict({"input_scale": 1.0 / 255.0}).input_divisor == 255.0
    assert ModelConfig.from_dict({"input_scale": 1.0, "input_kind": "frames"}).input_divisor == 1.0
    assert qd.load_model(qd.SHIPPED_MODEL).config.input_divisor == 255.0  # the shipped file stores input_scale


def test_reference_layers_with_different_betas_are_refused(tmp_path):
    from qsnn_deploy.errors import CheckpointError

    net = ReferenceNet(_config(4, 0.9, 1.0))
    state = net.state_dict()
    state["lif2.beta"] = torch.tensor(0.8)
    path = tmp_path / "mixed.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="different beta"):
        qd.load_model(path, preset="mnist-int4")


def test_spikes_names_a_misshaped_input():
    from qsnn_deploy.errors import QsnnError

    model = qd.load_model(qd.SHIPPED_MODEL)
    with pytest.raises(QsnnError, match=r"\(2, 5, 28\) does not fit the model"):
        model.spikes(np.zeros((2, 5, 28), np.uint8), 3)
    assert model.spikes(np.zeros((2, 28, 28), np.uint8), 3).shape == (3, 2, 10)  # one channel may be left out
