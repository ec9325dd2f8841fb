"""The frozen integer graph (IR) at the centre of qsnn-deploy."""

from .graph import FORMAT, VERSION, Graph
from .nodes import LIF, NODE_TYPES, Conv2d, Flatten, Input, Linear, Node, Output, SumPool2d
from .tensor import IntTensor

__all__ = ["FORMAT", "VERSION", "Graph", "LIF", "NODE_TYPES", "Conv2d", "Flatten", "Input", "Linear", "Node", "Output", "SumPool2d", "IntTensor"]
