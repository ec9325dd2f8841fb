"""cocotb testbench of a qsnn-deploy Verilog export: runs golden.json through qsnn_core.

Per sample it streams the input in, collects every spike of every layer at every step from
the debug stream (the core stalls on each until it is taken) and compares the raster of each
layer-step and the outputs (spike counts, or V[T-1] of a membrane readout) with the simulator's; the first difference fails the
test, naming sample, layer, step and neurons. Environment: QSNN_DEBUG=0 skips the rasters
(counts only, no stalls), QSNN_SAMPLES=N runs the first N samples. Writes rtl_stats.json
(cycles and synapse reads per sample, from the core's own counters).
"""

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer

HERE = Path(__file__).resolve().parent
CLOCK_NS = 10


async def feed(dut, words, frames, frame_words):
    """Send ``frames`` frames of ``frame_words`` words, each when the core raises in_ready."""
    for f in range(frames):
        await RisingEdge(dut.in_ready)
        await Timer(1, "ns")
        for word in words[f * frame_words : (f + 1) * frame_words]:
            dut.in_data.value = word
            dut.in_valid.value = 1
            await RisingEdge(dut.clk)
            await Timer(1, "ns")
        dut.in_valid.value = 0


def step_bound(core):
    """Cycles one step may take at most: every source value an event, every LIF update stalled."""
    cycles = sum(2 * layer["source_neurons"] * (layer["synapses_per_event"] + 2) + 4 * layer["neurons"] for layer in core["layers"])
    return 2 * cycles + 10_000


def output_value(core, word):
    """An out_data word as the simulator's number: a spike count, or a two's-complement membrane."""
    bits = core["output"]["bits"]
    if core["output"]["readout"] == "membrane" and word >> (bits - 1):
        return word - (1 << bits)
    return word


async def run_sample(dut, core, sample, index, rasters_on):
    layers = [layer["name"] for layer in core["layers"]]
    steps = core["timesteps"]
    frame_words = 1
    for s in core["input"]["shape"]:
        frame_words *= s
    frames = steps if core["input"]["encoding"] == "frames" else 1
    words = [v & ((1 << core["input"]["bits"]) - 1) for v in sample["input"]]
    cocotb.start_soon(feed(dut, words, frames, frame_words))
    step = [0] * len(layers)
    current = [[] for _ in layers]
    counts = []
    timeout = Timer(step_bound(core) * CLOCK_NS, "ns")
    spike_edge, out_edge = RisingEdge(dut.dbg_valid), RisingEdge(dut.out_valid)
    stats = {}
    carried = False  # the debug stream may present the next event right after a handshake
    while len(counts) < core["outputs"]:
        if not carried:
            fired = await First(spike_edge, out_edge, timeout)
            assert fired is not timeout, f"sample {index}: the core stalled (no spike and no output for {step_bound(core)} cycles)"
            await ReadOnly()
            if fired is out_edge:
                counts.append(output_value(core, int(dut.out_data.value)))
                if len(counts) == core["outputs"]:
                    stats = {"cycles": int(dut.cycles.value), "taps": int(dut.taps.value)}
                continue
        layer, neuron, eol = int(dut.dbg_layer.value), int(dut.dbg_neuron.value), int(dut.dbg_eol.value)
        if eol:
            t = step[layer]
            want = sample["rasters"][layers[layer]][t]
            if current[layer] != want:
                extra = sorted(set(current[layer]) - set(want))[:8]
                missing = sorted(set(want) - set(current[layer]))[:8]
                raise AssertionError(
                    f"sample {index} layer {layers[layer]} step {t}: spikes differ; RTL only {extra}, simulator only {missing}"
                )
            step[layer] += 1
            current[layer] = []
        else:
            current[layer].append(neuron)
        await Timer(1, "ns")
        dut.dbg_ready.value = 1
        await RisingEdge(dut.clk)
        await ReadOnly()
        carried = int(dut.dbg_valid.value) == 1
        await Timer(1, "ns")
        dut.dbg_ready.value = 0
    assert counts == sample["counts"], (
        f"sample {index}: outputs ({core['output']['readout']}) differ: RTL {counts}, simulator {sample['counts']}"
    )
    if rasters_on:
        assert step == [steps] * len(layers), f"sample {index}: layer-steps seen {step}, expected {steps} each"
    assert int(dut.ovf_error.value) == 0, f"sample {index}: overflow policy 'error' fired in the RTL"
    return stats


@cocotb.test()
async def golden_vectors(dut):
    """Every golden sample: identical outputs and (QSNN_DEBUG=1) identical per-layer rasters."""
    core = json.loads((HERE / "core.json").read_text())
    golden = json.loads((HERE / "golden.json").read_text())
    samples = golden["samples"][: int(os.environ.get("QSNN_SAMPLES", len(golden["samples"])))]
    rasters_on = os.environ.get("QSNN_DEBUG", "1") != "0"
    assert golden["timesteps"] == core["timesteps"], "golden.json was made for another T"
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.rst.value = 1
    dut.in_valid.value = 0
    dut.out_ready.value = 1
    dut.dbg_ready.value = 0
    dut.dbg_en.value = int(rasters_on)
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    results = []
    for index, sample in enumerate(samples):
        results.append(await run_sample(dut, core, sample, index, rasters_on))
        dut._log.info("sample %d: identical (%d cycles, %d synapse reads)", index, results[-1]["cycles"], results[-1]["taps"])
    stats = {"simulator": cocotb.SIM_NAME, "samples": results, "rasters_compared": rasters_on, "timesteps": core["timesteps"]}
    (HERE / "rtl_stats.json").write_text(json.dumps(stats, indent=1) + "\n")
