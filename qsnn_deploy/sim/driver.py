"""The one time loop: every backend, and the fine-tuner, drive a pure step function through it.

A step function has the shape of :func:`qsnn_deploy.sim.lif.step`::

    out[t], state[t] = step(x[t], state[t-1], params)        for t = 0 .. T-1

where ``x[t]`` is the same array at every step for a ``static`` input. The step may be one
neuron layer (the fast backend's exact fallback, the fine-tuner) or a whole chain of nodes
(the reference backend). The driver owns what every loop over time must do the same way:
the step index in an overflow error, and handing each step's output to the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from qsnn_deploy.errors import TargetError

State = TypeVar("State")

#: ``step(x, state, params) -> (out, state)``
StepFunction = Callable[[Any, State, Any], tuple[Any, State]]
#: ``sink(t, out, state)``: receives every step's output and new state
Sink = Callable[[int, Any, Any], None]


def run_steps(
    step: StepFunction,
    inputs: Any,
    state: State,
    params: Any,
    steps: int,
    *,
    static: bool = False,
    sink: Sink | None = None,
    t0: int = 0,
) -> State:
    """Drive ``step`` over ``steps`` time steps and return the last state.

    Args:
        step: the pure step function.
        inputs: ``x`` for every step if ``static``, else indexable by the step (``inputs[t]``).
        state: the state before the first step.
        params: passed to every call unchanged.
        steps: T.
        static: the same input at every step.
        sink: called as ``sink(t, out, state)`` after each step.
        t0: the global index of the first step (for error messages of chunked runs).

    Raises:
        TargetError: the step's overflow policy ``error`` fired; the message names the step.
    """
    for t in range(steps):
        try:
            out, state = step(inputs if static else inputs[t], state, params)
        except TargetError as exc:
            raise TargetError(f"{exc} at step {t0 + t}") from None
        if sink is not None:
            sink(t, out, state)
    return state


__all__ = ["Sink", "StepFunction", "run_steps"]
