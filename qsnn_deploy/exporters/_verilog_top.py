"""Text of ``qsnn_core.v``: the layer engines of one graph, its input buffer, step sequencer and streams.

The sequencer (docs/fpga.md): clear every layer's state; take one input sample (``frames``: one
frame before every step) from the ready/valid input stream into the input buffer; for each of
the T steps run the layer engines one after another; stream out the last layer's spike counts
(or, for a membrane readout, its membranes V[T-1]).
"""

from __future__ import annotations

import string
from importlib import resources
from typing import Any

import numpy as np

from qsnn_deploy.ir import Graph


def _bits(n: int) -> int:
    """Address width of a memory of ``n`` words (at least 1)."""
    return max(1, int(n - 1).bit_length())


def output_port(graph: Graph, plans: list[Any], timesteps: int) -> tuple[str, int]:
    """What ``out_data`` carries and its width: the Output's readout and the bits of one value.

    ``spike_count``: counts 0..T, unsigned. ``membrane``: the last LIF's V[T-1], two's complement
    at its state width.
    """
    readout = graph.chain()[-1][1].readout
    return readout, plans[-1].lif.state.bits if readout == "membrane" else _bits(timesteps + 1)


def _parameters(k: int, p: Any, port: tuple[str, int], overflow_codes: dict[str, int], last: bool) -> dict[str, int]:
    """qsnn_layer.v's parameters for layer plan ``p``."""
    lif = p.lif
    return {
        "LAYER": k,
        "IN_C": p.source[0],
        "IN_H": p.source[1],
        "IN_W": p.source[2],
        "VAL_BITS": p.val_bits,
        "VAL_SIGNED": int(p.val_signed),
        "STATIC_SRC": int(p.static_source),
        "LINEAR": int(p.linear),
        "KH": p.kernel[0],
        "KW": p.kernel[1],
        "PAD_H": p.padding[0],
        "PAD_W": p.padding[1],
        "CONV_H": p.conv[0],
        "CONV_W": p.conv[1],
        "POOL_H_SH": p.pool_shift[0],
        "POOL_W_SH": p.pool_shift[1],
        "OUT_C": p.out[0],
        "OUT_H": p.out[1],
        "OUT_W": p.out[2],
        "PER_NEURON": int(p.per_neuron),
        "W_BITS": p.weight_bits,
        "ACC_BITS": p.acc_bits,
        "STATE_BITS": lif.state.bits,
        "INPUT_SHIFT": lif.input_shift,
        "DECAY_MUL": lif.decay_mul,
        "DECAY_SHIFT": lif.decay_shift,
        "HALF_UP": int(lif.rounding == "half_up"),
        "OVERFLOW": overflow_codes[lif.overflow],
        "CMP_GE": int(lif.compare == "ge"),
        "RESET_ZERO": int(lif.reset == "zero"),
        "IMMEDIATE": int(lif.reset_timing == "immediate"),
        "COUNT_BITS": port[1],  # the output word; only the last engine keeps values of it
        "KEEP_COUNTS": (2 if port[0] == "membrane" else 1) if last else 0,
    }


def _instance(k: int, p: Any, port: tuple[str, int], overflow_codes: dict[str, int], last: bool) -> str:
    lif = p.lif
    params = _parameters(k, p, port, overflow_codes, last)
    text = ",\n".join(f"        .{key}({value})" for key, value in params.items())
    files = ",\n".join(
        f'        .{key}("layer{k}_{stem}.hex")'
        for key, stem in (("WEIGHT_FILE", "weights"), ("THRESHOLD_FILE", "threshold"), ("BIAS_FILE", "bias"))
    )
    src = "in_q" if k == 0 else f"l{k - 1}_spk"
    spk_addr = f"l{k + 1}_src_addr" if not last else "{" + f"{_bits(p.neurons)}" + "{1'b0}}"
    cnt_addr = "out_n" if last else "{" + f"{_bits(p.neurons)}" + "{1'b0}}"
    return f"""    // layer {k}: {p.name} ({"Linear" if p.linear else "Conv2d"} {p.source} -> LIF {p.out}, {lif.state.name}, {lif.overflow}, {lif.rounding}, {lif.compare}, {lif.reset}/{lif.reset_timing})
    wire [{_bits(int(np.prod(p.source))) - 1}:0] l{k}_src_addr;
    wire l{k}_spk;
    wire [COUNT_BITS-1:0] l{k}_cnt;
    wire [23:0] l{k}_dbg_neuron;
    qsnn_layer #(
{text},
{files}
    ) u_layer{k} (
        .clk(clk), .start(start_v[{k}]), .clear_op(clear_op), .first_step(t == 0), .done(done_v[{k}]),
        .src_addr(l{k}_src_addr), .src_data({src}),
        .spk_addr({spk_addr}), .spk_data(l{k}_spk),
        .cnt_addr({cnt_addr}), .cnt_data(l{k}_cnt),
        .dbg_en(dbg_en), .dbg_valid(dbg_valid_v[{k}]), .dbg_ready(dbg_ready), .dbg_eol(dbg_eol_v[{k}]),
        .dbg_neuron(l{k}_dbg_neuron), .tap_active(tap_v[{k}]), .ovf_error(ovf_v[{k}])
    );
"""


def core_verilog(graph: Graph, plans: list[Any], timesteps: int, overflow_codes: dict[str, int]) -> str:
    """The generated top module ``qsnn_core`` for ``plans`` (see qsnn_layer.v for one engine)."""
    n_layers = len(plans)
    inp = graph.input
    in_n = int(np.prod(inp.shape))
    out_n = plans[-1].neurons
    port = output_port(graph, plans, timesteps)
    template = (resources.files("qsnn_deploy.exporters") / "verilog_templates" / "qsnn_core.v.in").read_text()
    return string.Template(template).substitute(
        n_layers=n_layers,
        timesteps=timesteps,
        input_shape=inp.shape,
        input_type=inp.dtype.name,
        encoding=inp.encoding,
        in_bits=inp.dtype.bits,
        in_n=in_n,
        out_n=out_n,
        frames=int(inp.encoding == "frames"),
        count_bits=port[1],
        output_kind="the membrane V[T-1] (two's complement)" if port[0] == "membrane" else "the spike count",
        in_aw=_bits(in_n),
        out_aw=_bits(out_n),
        neuron_mux="\n".join(f"            {k}: dbg_neuron = l{k}_dbg_neuron;" for k in range(n_layers)),
        last=n_layers - 1,
        instances="".join(_instance(k, p, port, overflow_codes, k == n_layers - 1) for k, p in enumerate(plans)),
    )


def up5k_top_verilog(graph: Graph, plans: list[Any], timesteps: int) -> str:
    """``qsnn_up5k``: the core with only its streams on pins (the debug port and counters stay on chip)."""
    in_bits = graph.input.dtype.bits
    count_bits = output_port(graph, plans, timesteps)[1]
    return f"""// qsnn_up5k: generated by qsnn-deploy export --format verilog. The place-and-route top for an
// iCE40 UP5K: clock, reset and the two ready/valid streams on pins; debug stream off.
`default_nettype none
module qsnn_up5k (
    input wire clk,
    input wire rst,
    input wire in_valid,
    output wire in_ready,
    input wire [{in_bits - 1}:0] in_data,
    output wire out_valid,
    input wire out_ready,
    output wire [{count_bits - 1}:0] out_data,
    output wire out_last
);
    wire dbg_valid, dbg_eol, ovf_error;
    wire [7:0] dbg_layer;
    wire [23:0] dbg_neuron;
    wire [31:0] cycles, taps;
    qsnn_core u_core (
        .clk(clk), .rst(rst),
        .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data),
        .out_valid(out_valid), .out_ready(out_ready), .out_data(out_data), .out_last(out_last),
        .dbg_en(1'b0), .dbg_valid(dbg_valid), .dbg_ready(1'b1), .dbg_eol(dbg_eol),
        .dbg_layer(dbg_layer), .dbg_neuron(dbg_neuron), .cycles(cycles), .taps(taps), .ovf_error(ovf_error)
    );
endmodule
`default_nettype wire
"""
