"""Which rule list checks a graph against a target: the profile's ``rule_set`` names it."""

from __future__ import annotations

from qsnn_deploy.ir import Graph
from qsnn_deploy.targets import TargetProfile
from qsnn_deploy.targets.rules import RULES, Rule, check_target


def rules_for(target: TargetProfile) -> list[Rule]:
    """The rules of ``target.rule_set``: our own cores' (:data:`~qsnn_deploy.targets.rules.RULES`) or Xylo's."""
    if target.rule_set == "xylo":
        from qsnn_deploy.targets.xylo_rules import XYLO_RULES

        return XYLO_RULES
    return RULES


def check_graph(graph: Graph, target: TargetProfile) -> None:
    """Run the target's rules; one :class:`~qsnn_deploy.errors.TargetError` lists every failure."""
    check_target(graph, target, rules_for(target))


__all__ = ["check_graph", "rules_for"]
