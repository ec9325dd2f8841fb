"""The integer LIF step (qsnn_deploy.sim.lif): hand-computed golden sequences and properties.

Golden sequences (norse style): one or two neurons, decay 3/4 (decay_mul 3, decay_shift 2),
every value worked out by hand in the comments from the LIF docstring. The properties check
the decay against exact rational arithmetic and the whole step against a Python big-integer
transcription of the docstring, at the edges of the state type.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import oracle_lif_step  # noqa: E402

from qsnn_deploy.errors import TargetError
from qsnn_deploy.ir import LIF, IntTensor
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.sim import lif

INT8 = IntType(8)


def make_lif(threshold=(20,), bias=(0,), *, mul: int = 3, shift: int = 2, input_shift: int = 0, state: IntType = INT8, **kw) -> LIF:
    return LIF(
        threshold=IntTensor.of(list(threshold), state),
        bias=IntTensor.of(list(bias), state),
        decay_mul=mul,
        decay_shift=shift,
        input_shift=input_shift,
        state=state,
        **kw,
    )


def run(node: LIF, inputs: list[int], name: str = "lif") -> tuple[list[int], list[int], int]:
    """One neuron driven by ``inputs``: (V after each step, S, overflow count)."""
    p = lif.LIFParams.from_node(node, name)
    state = lif.initial_state((1, 1))
    vs, ss = [], []
    for a in inputs:
        s, state = lif.step(np.array([[a]]), state, p)
        vs.append(int(state.v[0, 0]))
        ss.append(int(s[0, 0]))
    return vs, ss, int(state.overflows[0])


# --- golden sequences, A = 10 at every step, threshold 20 ---------------------------------------

GOLDEN = [
    # delayed subtract, gt, half_up (r = 2): V = D(V) + 10 - 20 S[t-1]
    #   D(10) = (30+2)>>2 = 8 -> 18;  D(18) = (54+2)>>2 = 14 -> 24 > 20 spike;  D(24) = 18 -> 18+10-20 = 8;
    #   D(8) = 6 -> 16;  D(16) = 12 -> 22 spike;  D(22) = (66+2)>>2 = 17 -> 17+10-20 = 7
    (dict(), [10, 18, 24, 8, 16, 22, 7], [0, 0, 1, 0, 0, 1, 0]),
    # floor (r = 0): D(10) = 30>>2 = 7 -> 17;  D(17) = 51>>2 = 12 -> 22 spike;  D(22) = 16 -> 6;
    #   D(6) = 4 -> 14;  D(14) = 10 -> 20, not > 20;  D(20) = 15 -> 25 spike
    (dict(rounding="floor"), [10, 17, 22, 6, 14, 20, 25], [0, 0, 1, 0, 0, 0, 1]),
    # floor, ge: as above until V = 20 >= 20 spikes at t=5;  D(20) = 15 -> 15+10-20 = 5
    (dict(rounding="floor", compare="ge"), [10, 17, 22, 6, 14, 20, 5], [0, 0, 1, 0, 0, 1, 0]),
    # delayed zero: V = D(V * (1 - S[t-1])) + 10;  after the spike at 24: D(0) = (0+2)>>2 = 0 -> 10
    (dict(reset="zero"), [10, 18, 24, 10, 18, 24, 10], [0, 0, 1, 0, 0, 1, 0]),
    # immediate subtract: 24 spikes and becomes 4;  D(4) = (12+2)>>2 = 3 -> 13;  D(13) = (39+2)>>2 = 10 -> 20;
    #   D(20) = (60+2)>>2 = 15 -> 25 spikes -> 5;  D(5) = (15+2)>>2 = 4 -> 14
    (dict(reset_timing="immediate"), [10, 18, 4, 13, 20, 5, 14], [0, 0, 1, 0, 0, 1, 0]),
    # immediate zero: 24 spikes and becomes 0;  D(0) = 0 -> 10 -> 18 -> 24 -> 0 -> 10
    (dict(reset_timing="immediate", reset="zero"), [10, 18, 0, 10, 18, 0, 10], [0, 0, 1, 0, 0, 1, 0]),
]


@pytest.mark.parametrize(("options", "membrane", "spikes"), GOLDEN, ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_golden_sequences(options, membrane, spikes):
    vs, ss, ovf = run(make_lif(**options), [10] * 7)
    assert vs == membrane
    assert ss == spikes
    assert ovf == 0


def test_negative_membrane_rounding():
    # A = -10: half_up D(-10) = (-30+2)>>2 = -7 -> -17;  D(-17) = (-51+2)>>2 = -13 -> -23;  D(-23) = (-69+2)>>2 = -17 -> -27
    assert run(make_lif(), [-10] * 4)[0] == [-10, -17, -23, -27]
    # floor: D(-10) = -30>>2 = -8 -> -18;  D(-18) = -54>>2 = -14 -> -24;  D(-24) = -18 -> -28
    assert run(make_lif(rounding="floor"), [-10] * 4)[0] == [-10, -18, -24, -28]


def test_input_shift_and_bias():
    # I = (3 << 2) + 1 = 13:  13;  D(13) = 10 -> 23 spike;  D(23) = (69+2)>>2 = 17 -> 17+13-20 = 10;  D(10) = 8 -> 21 spike;
    #   D(21) = (63+2)>>2 = 16 -> 16+13-20 = 9
    vs, ss, _ = run(make_lif(bias=(1,), input_shift=2), [3] * 5)
    assert vs == [13, 23, 10, 21, 9]
    assert ss == [0, 1, 0, 1, 0]


def test_saturate_wrap_error_at_int8():
    # A = 50, threshold 127 (never exceeded): 50;  D(50) = (150+2)>>2 = 38 -> 88;  D(88) = (264+2)>>2 = 66 -> 116;
    #   D(116) = (348+2)>>2 = 87 -> 137 > 127
    #   saturate: 127, then D(127) = (381+2)>>2 = 95 -> 145 -> 127 again (2 overflows)
    vs, ss, ovf = run(make_lif(threshold=(127,)), [50] * 5)
    assert (vs, ovf) == ([50, 88, 116, 127, 127], 2)
    #   wrap: 137 - 256 = -119;  D(-119) = (-357+2)>>2 = -89 -> -39;  D(-39) = (-117+2)>>2 = -29 -> 21 (1 overflow)
    vs, ss, ovf = run(make_lif(threshold=(127,), overflow="wrap"), [50] * 6)
    assert (vs, ovf) == ([50, 88, 116, -119, -39, 21], 1)
    #   error: stops at the fourth step, naming the layer
    with pytest.raises(TargetError, match=r"layer 'lif7'.*INT8.*'error'"):
        run(make_lif(threshold=(127,), overflow="error"), [50] * 5, name="lif7")


def test_per_channel_parameters_broadcast_over_axis_0():
    # channel 0: threshold 20 (the first golden sequence); channel 1: threshold 5, bias 0:
    #   10 spikes;  D(10) = 8 -> 8+10-5 = 13 spikes;  D(13) = 10 -> 15 spikes;  D(15) = (45+2)>>2 = 11 -> 16 spikes
    p = lif.LIFParams.from_node(make_lif(threshold=(20, 5), bias=(0, 0)))
    state = lif.initial_state((1, 2, 1, 2))
    rows = []
    for _ in range(4):
        _, state = lif.step(np.full((1, 2, 1, 2), 10), state, p)
        rows.append(state.v[0, :, 0, :].tolist())
    assert [r[0] for r in rows] == [[10, 10], [18, 18], [24, 24], [8, 8]]
    assert [r[1] for r in rows] == [[10, 10], [13, 13], [15, 15], [16, 16]]


def test_batch_overflow_counter_is_per_sample():
    p = lif.LIFParams.from_node(make_lif(threshold=(127,)))
    state = lif.initial_state((2, 1))
    for _ in range(5):
        _, state = lif.step(np.array([[50], [1]]), state, p)
    assert state.overflows.tolist() == [2, 0]


# --- properties ----------------------------------------------------------------------------------


def exact_decay(v: int, mul: int, shift: int, rounding: str) -> int:
    """floor(v * mul / 2^shift (+ 1/2 for half_up)) in exact rational arithmetic."""
    x = Fraction(v * mul, 2**shift)
    if rounding == "half_up" and shift > 0:
        x += Fraction(1, 2)
    return x.numerator // x.denominator


decay_args = st.integers(0, 30).flatmap(
    lambda k: st.tuples(st.integers(-(2**47), 2**47 - 1), st.integers(0, 2**k), st.just(k), st.sampled_from(["floor", "half_up"]))
)


@settings(max_examples=300, deadline=None)
@given(decay_args)
def test_decay_matches_exact_rational(args):
    v, mul, k, rounding = args
    r = (1 << (k - 1)) if rounding == "half_up" and k > 0 else 0
    got = int(lif.decay(np.array([v]), mul, k, r)[0])
    assert got == exact_decay(v, mul, k, rounding)
    assert abs(Fraction(got) - Fraction(v * mul, 2**k)) <= 1
    if abs(v) * mul + r < 2**63:  # the direct product is exact too, and agrees with the split
        assert int(lif.decay(np.array([v]), mul, k, r, split=False)[0]) == got


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**40), 2**40), st.integers(1, 2**16), st.integers(1, 16))
def test_rounding_symmetry(v, mul, k):
    mul = min(mul, 2**k)
    prod = v * mul
    floor_sum = int(lif.decay(np.array([v]), mul, k, 0)[0] + lif.decay(np.array([-v]), mul, k, 0)[0])
    # floor(x) + floor(-x) is 0 for an integer x, else -1
    assert floor_sum == (0 if prod % 2**k == 0 else -1)
    r = 1 << (k - 1)
    half_sum = int(lif.decay(np.array([v]), mul, k, r)[0] + lif.decay(np.array([-v]), mul, k, r)[0])
    # round-half-up is odd-symmetric except on exact halves, which both go up
    assert half_sum == (1 if prod % 2**k == 2 ** (k - 1) else 0)


def oracle_step(a: int, v: int, s: int, node: LIF) -> tuple[int, int, bool]:
    """The shared oracle on Python big integers, one neuron of channel 0: (V, S, overflowed)."""
    u, spike, over = oracle_lif_step(a, v, s, node, int(node.threshold.values[0]), int(node.bias.values[0]))
    return int(u), int(spike), bool(over)


@st.composite
def lif_cases(draw):
    # the widest states and shifts are where int64 could overflow: draw them often
    bits = draw(st.sampled_from([2, 8, 24, 47, 48]) | st.integers(2, 48))
    state = IntType(bits)
    k = draw(st.sampled_from([0, 1, 16, 30]) | st.integers(0, 30))
    node = make_lif(
        threshold=(draw(st.integers(1, state.max)),),
        bias=(draw(st.integers(state.min, state.max)),),
        mul=draw(st.sampled_from([0, 2**k, max(2**k - 1, 0), (3 * 2**k) // 4]) | st.integers(0, 2**k)),
        shift=k,
        input_shift=draw(st.integers(0, 40)),
        state=state,
        reset=draw(st.sampled_from(["subtract", "zero"])),
        compare=draw(st.sampled_from(["gt", "ge"])),
        reset_timing=draw(st.sampled_from(["delayed", "immediate"])),
        rounding=draw(st.sampled_from(["floor", "half_up"])),
        overflow=draw(st.sampled_from(["saturate", "wrap"])),
    )
    # inputs around the interesting edges: tiny, near the state limits, and far beyond int64 shifts
    edge = st.sampled_from([state.min, state.max, state.min - 1, state.max + 1, 0, 1, -1])
    big = st.integers(2**40, 2**62) | st.integers(-(2**62), -(2**40))
    small = st.integers(-(2 ** max(bits - node.input_shift, 1)), 2 ** max(bits - node.input_shift, 1))
    inputs = draw(st.lists(st.one_of(edge, big, small), min_size=1, max_size=12))
    return node, inputs


@settings(max_examples=250, deadline=None)
@given(lif_cases())
def test_step_matches_big_integer_oracle(case):
    node, inputs = case
    p = lif.LIFParams.from_node(node)
    state = lif.initial_state((1, 1))
    v = s = overflows = 0
    for a in inputs:
        spikes, state = lif.step(np.array([[a]], dtype=np.int64), state, p)
        v, s, over = oracle_step(a, v, s, node)
        overflows += over
        assert (int(state.v[0, 0]), int(spikes[0, 0])) == (v, s)
        assert node.state.contains(state.v)
    assert int(state.overflows[0]) == overflows


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 48), st.sampled_from([-1, 0, 1]), st.booleans())
def test_saturation_and_wrap_at_the_edges(bits, offset, at_max):
    # no decay, no bias: V[0] = A exactly, so A at / one beyond each edge of the state type
    state = IntType(bits)
    edge = state.max if at_max else state.min
    a = edge + offset
    for policy in ("saturate", "wrap"):
        node = make_lif(threshold=(state.max,), mul=0, shift=0, state=state, overflow=policy)
        _, st_ = lif.step(np.array([[a]]), lif.initial_state((1, 1)), lif.LIFParams.from_node(node))
        inside = state.min <= a <= state.max
        expect = (
            a if inside else (min(max(a, state.min), state.max) if policy == "saturate" else (state.min if a > state.max else state.max))
        )
        assert int(st_.v[0, 0]) == expect
        assert int(st_.overflows[0]) == (0 if inside else 1)
