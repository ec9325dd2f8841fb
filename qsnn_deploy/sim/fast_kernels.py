"""The Numba LIF kernels of :mod:`.fast` (point 4 of its docstring), and whether the backend can run here.

The kernels are built on the first :func:`unavailable_reason` call (Numba compiles them on
first use), so importing this module needs neither torch nor Numba.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_NEURON_CHUNK = 2048  # neurons per parallel task in the LIF kernel: its state stays in L1
_MODES = {("delayed", "subtract"): 0, ("delayed", "zero"): 1, ("immediate", "subtract"): 2, ("immediate", "zero"): 3}
_kernel: Any = None
_import_error: str | None = None


def unavailable_reason() -> str | None:
    """Why the fast backend cannot run here (None if it can)."""
    global _kernel, _import_error
    if _kernel is None and _import_error is None:
        try:
            import numba  # noqa: F401
            import torch  # noqa: F401

            _kernel = _build_kernel()
        except ImportError as exc:  # pragma: no cover - both are installed in CI
            _import_error = str(exc)
    return _import_error


def available() -> bool:
    return unavailable_reason() is None


def _build_kernel() -> tuple[Any, Any]:
    """(generic, snnTorch-default) float64 LIF kernels; Numba compiles them on first use."""
    return _float_kernel(False), _float_kernel(True)


def _float_kernel(snntorch_default: bool) -> Any:
    """The LIF recurrence (saturating, no split decay) in float64.

    Used only when every value it forms is an integer below 2^52 (:func:`.fast_plan.float_lif_exact`):
    then every operation is exact and floor(x * 2^-k) is the arithmetic shift, and AVX-512
    vectorises it better than int64 code (which needs 64-bit multiplies). ``snntorch_default``
    compiles the variant with delayed subtract reset and ``>`` fixed as constants (measured
    1.3-1.7x faster than reading them at run time); the other one reads ``mode``/``ge``.
    ``record_v`` also writes V[t] of every step into ``v_rec`` (steps, n) (the fine-tuner's
    backward pass needs the membranes; the simulator passes a (1, 1) dummy).
    """
    import numba

    fixed = snntorch_default

    @numba.njit(parallel=True, cache=True, nogil=True)
    def lif_scan_f64(
        cur,
        static,
        steps,
        inner,
        channels,
        thr_c,
        bias_c,
        in_scale,
        mul,
        radd,
        inv,
        mode,
        ge,
        smin,
        smax,
        check_acc,
        acc_lo,
        acc_hi,
        v,
        s,
        spk,
        write,
        counts,
        ovf_n,
        acc_n,
        v_rec,
        record_v,
    ):  # pragma: no cover - compiled
        md = 0 if fixed else mode
        cmp_ge = False if fixed else ge
        n = v.shape[0]
        for c in numba.prange((n + _NEURON_CHUNK - 1) // _NEURON_CHUNK):
            lo = c * _NEURON_CHUNK
            hi = min(n, lo + _NEURON_CHUNK)
            m = hi - lo
            thr = np.empty(m, np.float64)
            bias = np.empty(m, np.float64)
            vl = v[lo:hi].astype(np.float64)
            sl = s[lo:hi].astype(np.float64)
            n_spk = np.zeros(m, np.float64)
            n_ovf = np.zeros(m, np.float64)
            n_acc = np.zeros(m, np.float64)
            for j in range(m):
                ch = ((lo + j) // inner) % channels
                thr[j] = thr_c[ch]
                bias[j] = bias_c[ch]
            for t in range(steps):
                row = cur[0 if static else t, lo:hi]
                for j in range(m):
                    a = np.float64(row[j])
                    n_acc[j] += (a < acc_lo) | (a > acc_hi)
                    sp = sl[j]
                    vp = vl[j] * (1.0 - sp) if md == 1 else vl[j]
                    u = np.floor((vp * mul + radd) * inv) + bias[j] + a * in_scale
                    if md == 0:
                        u -= sp * thr[j]
                    n_ovf[j] += (u < smin) | (u > smax)
                    u = min(max(u, smin), smax)
                    if cmp_ge:
                        f = 1.0 if u >= thr[j] else 0.0
                    else:
                        f = 1.0 if u > thr[j] else 0.0
                    if md == 2:
                        u -= f * thr[j]
                    elif md == 3:
                        u *= 1.0 - f
                    vl[j] = u
                    sl[j] = f
                    n_spk[j] += f
                if write:
                    out = spk[t, lo:hi]
                    for j in range(m):
                        out[j] = sl[j]
                if record_v:
                    rec = v_rec[t, lo:hi]
                    for j in range(m):
                        rec[j] = vl[j]
            for j in range(m):
                v[lo + j] = np.int64(vl[j])
                s[lo + j] = np.int64(sl[j])
                counts[lo + j] += np.int64(n_spk[j])
                ovf_n[lo + j] += np.int64(n_ovf[j])
                if check_acc:
                    acc_n[lo + j] += np.int64(n_acc[j])

    return lif_scan_f64


_NO_RECORD = np.zeros((1, 1), np.float64)  # the kernel's membrane record when none is asked for


def scan(
    cur: np.ndarray,
    static: bool,
    steps: int,
    inner: int,
    channels: int,
    p: Any,
    v: np.ndarray,
    s: np.ndarray,
    spk: np.ndarray,
    write: bool,
    counts: np.ndarray,
    ovf: np.ndarray,
    acc: np.ndarray,
    accumulator: Any = None,
    v_rec: np.ndarray | None = None,
) -> None:
    """Advance one LIF layer (:class:`~.lif.LIFParams` ``p``) by ``steps`` steps with the float64 kernel.

    ``cur``: synaptic sums (1 if ``static`` else steps, n), neuron j in channel
    ``(j // inner) % channels``. The state ``v``, ``s`` and the per-neuron spike, overflow and
    accumulator-overflow counters are updated in place; spikes go to ``spk`` if ``write``,
    membranes V[t] to ``v_rec`` if given. The caller checks exactness (``fast_plan.float_lif_exact``)
    and acts on overflows.
    """
    generic, snntorch_default = _kernel  # built by unavailable_reason()
    mode = _MODES[(p.reset_timing, p.reset)]
    kernel = snntorch_default if (mode == 0 and p.compare == "gt") else generic
    # int64 covers every synaptic sum (checked by the caller), so wider accumulator bounds are harmless
    lo, hi = (float(accumulator.min), float(accumulator.max)) if accumulator is not None else (0.0, 0.0)
    kernel(
        cur,
        static,
        steps,
        inner,
        channels,
        p.threshold.astype(np.float64),
        p.bias.astype(np.float64),
        float(2**p.input_shift),
        float(p.decay_mul),
        float(p.round_add),
        2.0**-p.decay_shift,
        mode,
        p.compare == "ge",
        float(p.state.min),
        float(p.state.max),
        accumulator is not None,
        lo,
        hi,
        v,
        s,
        spk,
        write,
        counts,
        ovf,
        acc,
        _NO_RECORD if v_rec is None else v_rec,
        v_rec is not None,
    )


def scan_recorded(sums: np.ndarray, static: bool, steps: int, p: Any, channels: int, inner: int) -> tuple[np.ndarray, np.ndarray]:
    """Spikes S[t] and membranes V[t] of one LIF layer from V = S = 0, both (steps, n) float64.

    ``sums``: integer synaptic sums A as float64, (1 if ``static`` else steps, n), n neurons in
    C order with channel ``(index // inner) % channels``; ``p``: :class:`~.lif.LIFParams`.
    Exact only where ``fast_plan.float_lif_exact(p, max |A|)`` holds: the caller checks, as the
    simulator does.

    Raises:
        TargetError: overflow policy ``error`` and the membrane left the state type.
    """
    from qsnn_deploy.errors import TargetError

    if unavailable_reason() is not None:
        raise RuntimeError(f"the Numba LIF kernel is unavailable: {unavailable_reason()}")
    n = sums.shape[1]
    v, s = np.zeros(n, np.int64), np.zeros(n, np.int64)
    counts, ovf, acc = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    spk, v_rec = np.empty((steps, n), np.float64), np.empty((steps, n), np.float64)
    scan(np.ascontiguousarray(sums, np.float64), static, steps, inner, channels, p, v, s, spk, True, counts, ovf, acc, v_rec=v_rec)
    if p.overflow == "error" and ovf.any():
        raise TargetError(
            f"layer {p.name!r}: membrane overflows the state type {p.state.name} [{p.state.min}, {p.state.max}] (overflow policy 'error')"
        )
    return spk, v_rec
