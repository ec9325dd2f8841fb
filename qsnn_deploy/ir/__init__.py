"""The frozen integer graph (IR) at the centre of qsnn-deploy."""

from qsnn_deploy.ir.graph import FORMAT, VERSION, Graph
from qsnn_deploy.ir.nodes import LIF, NODE_TYPES, Conv2d, CubaLIF, Flatten, Input, Linear, Node, Output, SumPool2d
from qsnn_deploy.ir.tensor import IntTensor

__all__ = [
    "FORMAT",
    "VERSION",
    "Graph",
    "LIF",
    "NODE_TYPES",
    "Conv2d",
    "CubaLIF",
    "Flatten",
    "Input",
    "Linear",
    "Node",
    "Output",
    "SumPool2d",
    "IntTensor",
]
