"""The one neuron-arithmetic type that IR neuron nodes and target profiles share."""

import dataclasses

import numpy as np
import pytest

from qsnn_deploy.errors import GraphError, TargetError
from qsnn_deploy.ir import LIF, IntTensor
from qsnn_deploy.ir.arithmetic import NeuronArithmetic
from qsnn_deploy.ir.dtypes import IntType
from qsnn_deploy.targets import TargetProfile, load_target


def _lif(arith: NeuronArithmetic) -> LIF:
    thr = IntTensor(np.array([5, 7]), arith.state)
    return LIF(threshold=thr, bias=IntTensor(np.zeros(2, np.int64), arith.state), decay_mul=3, **arith.fields())


@pytest.mark.parametrize("name", sorted(NeuronArithmetic.CHOICES))
def test_every_choice_builds_and_an_unknown_one_names_its_field(name):
    base = load_target("int4-core").arithmetic
    for value in NeuronArithmetic.CHOICES[name]:
        arith = dataclasses.replace(base, **{name: value})
        assert _lif(arith).arithmetic == arith
    with pytest.raises(GraphError, match=f"{name} must be one of"):
        dataclasses.replace(base, **{name: "sideways"})
    with pytest.raises(GraphError, match=f"LIF: {name} must be one of"):
        LIF(
            threshold=IntTensor(np.array([5]), base.state),
            bias=IntTensor(np.array([0]), base.state),
            decay_mul=3,
            **{**base.fields(), name: "sideways"},
        )
    with pytest.raises(TargetError, match=f"target int4-core: {name} must be one of"):
        TargetProfile.from_dict({**load_target("int4-core").to_dict(), name: "sideways"})


def test_target_profile_reads_its_arithmetic_fields_and_round_trips():
    t = load_target("int4-core")
    assert t.state == t.arithmetic.state == IntType(24)
    assert t.decay_shift == t.arithmetic.decay_shift == 16
    assert TargetProfile.from_dict(t.to_dict()) == t
    wide = t.with_changes(state=IntType(32), limits={})
    assert wide.arithmetic.state == IntType(32) and wide.limits == {} and wide.weight == t.weight
    with pytest.raises(TargetError, match="decay_shift"):
        t.with_changes(decay_shift=99)
    with pytest.raises(AttributeError):
        t.no_such_field  # noqa: B018


def test_differences_name_each_field():
    a = load_target("int4-core").arithmetic
    b = dataclasses.replace(a, compare="ge", overflow="wrap")
    assert sorted(f for f, _, _ in a.differences(b)) == ["compare", "overflow"]
    assert a.differences(a) == []
