r"""Integer leaky integrate-and-fire neurons as a pure step function (norse style).

One call advances a layer of neurons by one time step; nothing is mutated, the new state is
returned. The arithmetic is exactly the :class:`~qsnn_deploy.ir.nodes.LIF` docstring, with
A[t] the integer synaptic sum, c a neuron's channel (axis 0 of the per-sample shape)::

    I[t]  = (A[t] << input_shift) + bias[c]
    D(V)  = (V * decay_mul + r) >> decay_shift      r = 0 (floor) or 2^(decay_shift-1) (half_up)
    delayed   subtract: V[t] = ovf(D(V[t-1]) + I[t] - S[t-1] * threshold[c])
    delayed   zero:     V[t] = ovf(D(V[t-1] * (1 - S[t-1])) + I[t])
    immediate (either): V[t] = ovf(D(V[t-1]) + I[t]); after the spike test
                        V[t] -= S[t] * threshold[c] (subtract) or V[t] *= 1 - S[t] (zero)
    S[t]  = V[t] > threshold[c] ("gt")  or  V[t] >= threshold[c] ("ge")

``ovf`` applies the node's overflow policy at the ``state`` width: ``saturate`` clips to
[min, max], ``wrap`` wraps modulo 2^bits (two's complement), ``error`` raises
:class:`~qsnn_deploy.errors.TargetError`. The state carries a per-sample counter of the
neuron-steps at which ``ovf`` had to act (the value before ``ovf`` was outside the type).

Exactness on int64. The state is at most 48 bits wide, so V, bias and threshold are below
2^47 in magnitude. Two products could leave int64 and are kept exact:

- ``V * decay_mul`` (up to 2^77): when it may not fit, V is split as q * 2^k + rem with
  0 <= rem < 2^k, and D(V) = q * m + ((rem * m + r) >> k), which is the same floor.
- ``A << input_shift``: A is clipped to +-2^(61 - input_shift) first. Beyond that bound the
  sum is outside every state type in the same direction whatever the other terms are, so
  saturation, the overflow count and ``error`` are unchanged; ``wrap`` instead uses the
  unclipped sum modulo 2^64, which is exact modulo 2^bits because bits <= 48 divides 64.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from qsnn_deploy.errors import TargetError
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.ir.nodes import LIF, CubaLIF, Linear


class LIFParams(NamedTuple):
    """Integer parameters of one LIF layer, as the step function uses them.

    ``threshold`` and ``bias`` are per channel, shape (C,); :func:`step` broadcasts them
    over axis 1 of the batched arrays (axis 0 of the per-sample shape).
    """

    name: str  # layer name, for error messages
    threshold: np.ndarray  # (C,) int64, > 0
    bias: np.ndarray  # (C,) int64
    decay_mul: int  # m in D(V)
    decay_shift: int  # k in D(V)
    round_add: int  # r in D(V): 0 (floor) or 2^(k-1) (half_up)
    input_shift: int
    state: IntType
    reset: str  # "subtract" | "zero"
    compare: str  # "gt" | "ge"
    reset_timing: str  # "delayed" | "immediate"
    overflow: str  # "saturate" | "wrap" | "error"

    @classmethod
    def from_node(cls, node: LIF, name: str = "lif") -> LIFParams:
        """Parameters of an IR :class:`~qsnn_deploy.ir.nodes.LIF` node called ``name``."""
        k = node.decay_shift
        return cls(
            name=name,
            threshold=np.asarray(node.threshold.values, dtype=np.int64),
            bias=np.asarray(node.bias.values, dtype=np.int64),
            decay_mul=node.decay_mul,
            decay_shift=k,
            # 2^(k-1) is "one half" in units of 2^-k; with k = 0 there is no fraction to round.
            round_add=(1 << (k - 1)) if node.rounding == "half_up" and k > 0 else 0,
            input_shift=node.input_shift,
            state=node.state,
            reset=node.reset,
            compare=node.compare,
            reset_timing=node.reset_timing,
            overflow=node.overflow,
        )

    @property
    def input_limit(self) -> int:
        """|A| above which the membrane leaves every state type (see the module docstring)."""
        return 1 << (61 - self.input_shift)

    @property
    def decay_needs_split(self) -> bool:
        """True when V * decay_mul may not fit int64 (|V| <= 2^(bits-1))."""
        return (self.state.bits - 1) + self.decay_mul.bit_length() > 62


class LIFState(NamedTuple):
    """State of a batch of neurons: membrane, last spikes and a per-sample overflow count."""

    v: np.ndarray  # (B, *shape) int64 membrane V[t-1]
    s: np.ndarray  # (B, *shape) int64 0/1 spikes S[t-1]
    overflows: np.ndarray  # (B,) int64: neuron-steps so far at which ovf acted


def initial_state(shape: tuple[int, ...]) -> LIFState:
    """V[-1] = 0, S[-1] = 0, no overflows, for a batch of ``shape`` = (B, *per_sample)."""
    return LIFState(np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape[0], np.int64))


def decay(v: np.ndarray, mul: int, shift: int, round_add: int, split: bool = True) -> np.ndarray:
    """D(V) = (V * mul + round_add) >> shift with an arithmetic (flooring) shift, exact on int64.

    ``split=False`` computes the product directly; it is exact only when |V| * mul + round_add
    < 2^63 (see :attr:`LIFParams.decay_needs_split`).
    """
    v = np.asarray(v, dtype=np.int64)
    if not split:
        return (v * mul + round_add) >> shift
    q = v >> shift  # floor(V / 2^k)
    rem = v & ((1 << shift) - 1)  # V - q * 2^k, in [0, 2^k)
    return q * mul + ((rem * mul + round_add) >> shift)


def apply_overflow(u: np.ndarray, state: IntType, policy: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """ovf(u) at the ``state`` width, and a mask of where it acted.

    ``u`` must hold the exact value (or, for ``wrap``, the value modulo 2^64).

    Raises:
        TargetError: policy ``error`` and some value lies outside ``state``.
    """
    outside = (u < state.min) | (u > state.max)
    if policy == "saturate":
        return np.clip(u, state.min, state.max), outside
    if policy == "wrap":
        return state.wrap(u), outside
    if outside.any():
        bad = int(u[outside].flat[0])
        raise TargetError(
            f"layer {name!r}: membrane value {bad} overflows the state type {state.name} "
            f"[{state.min}, {state.max}] (overflow policy 'error')"
        )
    return u, outside


def step(a: np.ndarray, state: LIFState, p: LIFParams) -> tuple[np.ndarray, LIFState]:
    """Advance a batch of LIF neurons by one time step (see the module docstring).

    Args:
        a: integer synaptic sums A[t], shape (B, C, ...) (any integer dtype).
        state: (V[t-1], S[t-1], overflow counts) from :func:`initial_state` or the last step.
        p: the layer's parameters, :meth:`LIFParams.from_node`.

    Returns:
        (S[t] as int64 0/1 of the shape of ``a``, the new state).

    Raises:
        TargetError: the overflow policy is ``error`` and the membrane leaves the state type.
    """
    a = np.asarray(a, dtype=np.int64)
    chan = (1, -1) + (1,) * (a.ndim - 2)  # broadcast (C,) over (B, C, ...)
    thr = p.threshold.reshape(chan)
    bias = p.bias.reshape(chan)
    v_prev, s_prev = state.v, state.s
    if p.reset_timing == "delayed" and p.reset == "zero":
        v_prev = v_prev * (1 - s_prev)  # the zero reset acts before the decay
    leak = decay(v_prev, p.decay_mul, p.decay_shift, p.round_add, split=p.decay_needs_split)
    # terms that do not involve A: all below 2^49 in magnitude
    rest = leak + bias
    if p.reset_timing == "delayed" and p.reset == "subtract":
        rest = rest - s_prev * thr

    lim = p.input_limit
    a_safe = np.clip(a, -lim, lim)
    u = rest + (a_safe << p.input_shift)  # exact: |u| < 2^61 + 2^49
    v, outside = apply_overflow(u, p.state, p.overflow, p.name)
    if p.overflow == "wrap" and (a_safe != a).any():
        # int64 arithmetic is exact modulo 2^64, hence modulo 2^bits: wrap the true sum
        v = p.state.wrap(rest + (a << p.input_shift))

    s = (v > thr) if p.compare == "gt" else (v >= thr)
    s = s.astype(np.int64)
    if p.reset_timing == "immediate":
        # v > thr > 0 where s = 1, so neither reset can leave the state type
        v = v - s * thr if p.reset == "subtract" else v * (1 - s)
    overflows = state.overflows + outside.reshape(len(outside), -1).sum(axis=1)
    return s, LIFState(v, s, overflows)


# --- current-based LIF (Xylo) ----------------------------------------------------------------


class CubaParams(NamedTuple):
    """Integer parameters of one :class:`~qsnn_deploy.ir.nodes.CubaLIF` layer and its Linear."""

    name: str  # layer name, for error messages
    weight: np.ndarray  # (J, C) int64: wrap_I(W[c, j] << weight_shift), transposed for x @ weight
    threshold: np.ndarray  # (C,) int64, > 0
    bias: np.ndarray  # (C,) int64
    dash_syn: np.ndarray  # (C,) int64
    dash_mem: np.ndarray  # (C,) int64
    input_cap: int  # 0: none
    spike_cap: int
    state: IntType  # membrane
    synapse_state: IntType  # synaptic current

    @classmethod
    def from_nodes(cls, linear: Linear, node: CubaLIF, name: str = "cuba") -> CubaParams:
        """Parameters of a CubaLIF ``node`` called ``name`` and the ``linear`` node feeding it."""
        shifted = linear.weight.values.T.astype(np.int64) << node.weight_shift
        return cls(
            name=name,
            weight=node.synapse_state.wrap(shifted),
            threshold=np.asarray(node.threshold.values, np.int64),
            bias=np.asarray(node.bias.values, np.int64),
            dash_syn=np.asarray(node.dash_syn.values, np.int64),
            dash_mem=np.asarray(node.dash_mem.values, np.int64),
            input_cap=node.input_cap,
            spike_cap=node.spike_cap,
            state=node.state,
            synapse_state=node.synapse_state,
        )


class CubaState(NamedTuple):
    """State of a batch of current-based neurons: synaptic current, membrane, saturation count."""

    i: np.ndarray  # (B, C) int64 synaptic current I[t-1]
    v: np.ndarray  # (B, C) int64 membrane V[t-1]
    saturations: np.ndarray  # (B,) int64: neuron-steps so far at which a saturation acted


def cuba_initial_state(batch: int, neurons: int) -> CubaState:
    """I[-1] = V[-1] = 0 and no saturations."""
    return CubaState(np.zeros((batch, neurons), np.int64), np.zeros((batch, neurons), np.int64), np.zeros(batch, np.int64))


def shift_decrement(x: np.ndarray, dash: np.ndarray) -> np.ndarray:
    """dec(x, dash) = x >> dash (arithmetic), or sign(x) where that is 0: what the decay removes."""
    d = x >> dash
    return np.where(d == 0, np.sign(x), d)


def accumulate_events(i: np.ndarray, n: np.ndarray, weight: np.ndarray, syn: IntType) -> tuple[np.ndarray, np.ndarray]:
    """I <- sat(I + n_j * w_j) for j = 0..J-1 in order; and a mask of the neurons where it saturated.

    Fast path: where neither the sum of the positive nor of the negative increments can leave
    ``syn``, no partial sum can, and the result is the plain sum (one matrix product).
    The products run in float64 (BLAS) when every partial sum is below 2^53 in magnitude, so
    they are exact; int64 otherwise.
    """
    bound = float(np.abs(n).sum(axis=1).max(initial=0)) * float(np.abs(weight).max(initial=0))
    kind = np.float64 if bound < 2**53 else np.int64
    nk = n.astype(kind)
    pos = (nk @ np.maximum(weight, 0).astype(kind)).astype(np.int64)
    neg = (nk @ np.minimum(weight, 0).astype(kind)).astype(np.int64)
    total = i + pos + neg
    risky = ((i + pos) > syn.max) | ((i + neg) < syn.min)
    rows = np.flatnonzero(risky.any(axis=1))
    if rows.size == 0:
        return total, risky
    b, c = np.nonzero(risky[rows])
    if 4 * b.size < rows.size * risky.shape[1]:  # few risky neurons: loop over them alone
        b = rows[b]
        pick_n, pick_w, at = (lambda j: n[b, j]), (lambda j: weight[j, c]), (b, c)
    else:  # many: loop over whole rows (contiguous, cheaper per element)
        pick_n, pick_w, at = (lambda j: n[rows, j : j + 1]), (lambda j: weight[j]), rows
    acc = i[at]
    clipped = np.zeros(acc.shape, bool)
    for j in np.flatnonzero(n[rows].any(axis=0)):
        part = acc + pick_n(j) * pick_w(j)
        acc = np.clip(part, syn.min, syn.max)
        clipped |= acc != part
    total[at] = acc
    risky[at] = clipped
    return total, risky


def cuba_step(x: np.ndarray, state: CubaState, p: CubaParams) -> tuple[np.ndarray, CubaState]:
    """Advance a batch of current-based neurons by one step (the CubaLIF docstring's equation)::

        n      = min(x, input_cap)
        I      <- sat_I(I + n_j * w_j) for j in order;  I[t] = I - dec(I, dash_syn)
        dV     = sat_V(sat_V(wrap_V(-dec(V[t-1], dash_mem)) + I[t]) + bias)
        V'     = sat_V(V[t-1] + dV);  S = clip(V' // threshold, 0, spike_cap);  V[t] = V' - S * threshold

    Args:
        x: (B, J) presynaptic event counts arriving this step (the driver applies ``input_delay``).
        state: (I[t-1], V[t-1], saturation counts).
        p: :meth:`CubaParams.from_nodes`.

    Returns:
        (S[t] as (B, C) int64 spike counts 0..spike_cap, the new state).
    """
    n = np.asarray(x, np.int64)
    if p.input_cap:
        n = np.minimum(n, p.input_cap)
    i, syn_sat = accumulate_events(state.i, n, p.weight, p.synapse_state)
    i = i - shift_decrement(i, p.dash_syn)
    lo, hi = p.state.min, p.state.max
    leak = p.state.wrap(-shift_decrement(state.v, p.dash_mem))
    sums = [leak + i]
    dv = np.clip(sums[-1], lo, hi)
    sums.append(dv + p.bias)
    dv = np.clip(sums[-1], lo, hi)
    sums.append(state.v + dv)
    v = np.clip(sums[-1], lo, hi)
    s = np.clip(v // p.threshold, 0, p.spike_cap)
    v = v - s * p.threshold
    acted = syn_sat | np.any([(u < lo) | (u > hi) for u in sums], axis=0)
    return s, CubaState(i, v, state.saturations + acted.sum(axis=1))


__all__ = [
    "CubaParams",
    "CubaState",
    "LIFParams",
    "LIFState",
    "accumulate_events",
    "apply_overflow",
    "cuba_initial_state",
    "cuba_step",
    "decay",
    "initial_state",
    "shift_decrement",
    "step",
]
