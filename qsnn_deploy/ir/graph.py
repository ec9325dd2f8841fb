"""The frozen integer graph: named nodes and directed edges, checked on construction.

A graph is valid when it has exactly one Input and one Output, every edge names existing
nodes, there is no cycle, and the shapes agree along every edge. The simulator and the
exporters also need it to be a chain (each node has at most one predecessor and one
successor), which :meth:`Graph.chain` checks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from qsnn_deploy.errors import GraphError
from qsnn_deploy.ir.nodes import LIF, Input, Node, Output, Shape
from qsnn_deploy.ir.tensor import MAX_ELEMENTS

MAX_NODES = 10_000
FORMAT = "qsnn-deploy-graph"
VERSION = 1


@dataclass(frozen=True, eq=False)
class Graph:
    """Named nodes plus edges (src, dst). Immutable: passes return new graphs.

    ``timesteps`` is T, the number of steps a sample runs for (the model's training T), or None
    when the graph does not say; the graph document stores it as its top-level ``timesteps``.
    ``metadata`` is free-form provenance (producer, model config, folds) that no pass reads.
    """

    nodes: Mapping[str, Node]
    edges: tuple[tuple[str, str], ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    timesteps: int | None = None

    def __post_init__(self) -> None:
        if self.timesteps is not None and (type(self.timesteps) is not int or self.timesteps < 1):
            raise GraphError(f"timesteps must be a positive integer or None, got {self.timesteps!r}"[:200])
        if not isinstance(self.nodes, Mapping) or not self.nodes:
            raise GraphError("graph has no nodes")
        if len(self.nodes) > MAX_NODES:
            raise GraphError(f"graph has {len(self.nodes)} nodes, more than the limit {MAX_NODES}")
        for name, node in self.nodes.items():
            if not isinstance(name, str) or not name:
                raise GraphError(f"node names must be non-empty strings, got {name!r}")
            if not isinstance(node, Node):
                raise GraphError(f"node {name!r} is not an IR node")
        edges = tuple(tuple(e) for e in self.edges)
        for e in edges:
            if len(e) != 2 or not all(isinstance(x, str) for x in e):
                raise GraphError(f"edge must be a pair of node names, got {e!r}"[:200])
            for end in e:
                if end not in self.nodes:
                    raise GraphError(f"edge {e[0]!r} -> {e[1]!r} names unknown node {end!r}"[:200])
        if len(set(edges)) != len(edges):
            raise GraphError("graph has duplicate edges")
        object.__setattr__(self, "nodes", MappingProxyType(dict(self.nodes)))
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        # adjacency lists, so graph walks are linear in the graph size (not nodes x edges)
        succ: dict[str, list[str]] = {n: [] for n in self.nodes}
        pred: dict[str, list[str]] = {n: [] for n in self.nodes}
        for a, b in edges:
            succ[a].append(b)
            pred[b].append(a)
        object.__setattr__(self, "_succ", succ)
        object.__setattr__(self, "_pred", pred)
        inputs = [n for n, v in self.nodes.items() if isinstance(v, Input)]
        outputs = [n for n, v in self.nodes.items() if isinstance(v, Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise GraphError(f"graph needs exactly one Input and one Output node, has {len(inputs)} and {len(outputs)}")
        self.shapes()  # raises on cycles, unreachable nodes and shape mismatches

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return dict(self.nodes) == dict(other.nodes) and self.edges == other.edges and dict(self.metadata) == dict(other.metadata)

    def predecessors(self, name: str) -> list[str]:
        return list(self._pred.get(name, ()))

    def successors(self, name: str) -> list[str]:
        return list(self._succ.get(name, ()))

    def topological_order(self) -> list[str]:
        """Node names so that every edge goes forward; raises on a cycle."""
        indegree = {n: 0 for n in self.nodes}
        for _, b in self.edges:
            indegree[b] += 1
        ready = deque(n for n in self.nodes if indegree[n] == 0)
        order: list[str] = []
        while ready:
            n = ready.popleft()
            order.append(n)
            for m in self.successors(n):
                indegree[m] -= 1
                if indegree[m] == 0:
                    ready.append(m)
        if len(order) != len(self.nodes):
            done = set(order)
            raise GraphError(f"graph has a cycle through {sorted(n for n in self.nodes if n not in done)[:5]}")
        return order

    def shapes(self) -> dict[str, Shape]:
        """Per-sample output shape of every node (checks that shapes agree on every edge)."""
        shapes: dict[str, Shape] = {}
        for name in self.topological_order():
            node = self.nodes[name]
            preds = self.predecessors(name)
            if isinstance(node, Input):
                if preds:
                    raise GraphError(f"Input node {name!r} has incoming edges")
                shapes[name] = node.shape
            elif len(preds) != 1:
                raise GraphError(f"node {name!r} has {len(preds)} inputs; every non-Input node needs exactly one")
            else:
                try:
                    shapes[name] = node.output_shape(shapes[preds[0]])
                except GraphError as exc:
                    raise GraphError(f"node {name!r}: {exc}") from None
            size = 1
            for s in shapes[name]:
                size *= s
            if size > MAX_ELEMENTS:  # e.g. a huge padding: nothing could simulate or export it
                raise GraphError(f"node {name!r}: output of {size} elements per sample exceeds the limit of {MAX_ELEMENTS}"[:300])
        return shapes

    def chain(self) -> list[tuple[str, Node]]:
        """Nodes from Input to Output as a chain; raises if the graph branches."""
        for name in self.nodes:
            if len(self.successors(name)) > 1:
                raise GraphError(f"node {name!r} feeds {len(self.successors(name))} nodes; only chains are supported")
        order = self.topological_order()
        out = [(n, self.nodes[n]) for n in order]
        if not isinstance(out[0][1], Input) or not isinstance(out[-1][1], Output):
            raise GraphError("graph is not a chain from its Input to its Output")
        for (a, _), (b, _) in zip(out, out[1:]):
            if b not in self._succ[a]:
                raise GraphError(f"graph is not a chain: no edge {a!r} -> {b!r}")
        return out

    @property
    def input(self) -> Input:
        return next(v for v in self.nodes.values() if isinstance(v, Input))

    def lif_layers(self) -> Iterator[tuple[str, LIF]]:
        for name, node in self.chain():
            if isinstance(node, LIF):
                yield name, node

    @classmethod
    def sequential(
        cls, named_nodes: list[tuple[str, Node]], metadata: Mapping[str, Any] | None = None, *, timesteps: int | None = None
    ) -> Graph:
        """A chain graph from ``[(name, node), ...]`` in order."""
        names = [n for n, _ in named_nodes]
        if len(set(names)) != len(names):
            raise GraphError("duplicate node names")
        return cls(dict(named_nodes), tuple(zip(names, names[1:])), metadata or {}, timesteps)

    def replace_node(self, name: str, node: Node) -> Graph:
        """A new graph with node ``name`` replaced (for passes)."""
        if name not in self.nodes:
            raise GraphError(f"no node {name!r}")
        return Graph({**self.nodes, name: node}, self.edges, self.metadata, self.timesteps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": {name: node.to_dict() for name, node in self.nodes.items()},
            "edges": [list(e) for e in self.edges],
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Graph:
        if not isinstance(data, dict):
            raise GraphError(f"graph must be an object, got {type(data).__name__}")
        nodes, edges = data.get("nodes"), data.get("edges")
        if not isinstance(nodes, dict):
            raise GraphError("graph.nodes must be an object of name -> node")
        if not isinstance(edges, list) or not all(isinstance(e, list) and len(e) == 2 for e in edges):
            raise GraphError("graph.edges must be a list of [src, dst] pairs")
        if len(nodes) > MAX_NODES or len(edges) > MAX_NODES * 4:
            raise GraphError("graph is larger than the limits")
        metadata = data.get("metadata", {})
        if not isinstance(metadata, dict):
            raise GraphError("graph.metadata must be an object")
        built = {}
        for name, nd in nodes.items():
            try:
                built[name] = Node.from_dict(nd)
            except GraphError as exc:
                raise GraphError(f"node {name!r}: {exc}"[:400]) from None
        return cls(built, tuple((a, b) for a, b in edges), metadata)
