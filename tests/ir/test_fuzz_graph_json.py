"""Fuzzing the graph JSON reader: whatever the bytes, only :class:`GraphError` comes out.

``read_graph_json`` (on files) and ``Graph.from_dict`` get, in total, well over 1,000
generated documents (derandomized, so CI sees the same ones every run):

- mutations of a real exported document (a small graph from ``graph_factory``, with its
  target and golden vectors): one random path replaced by a hostile value, deleted, or given
  an extra sibling; values beyond a tensor's declared bit width; structural damage (cycles,
  dangling edges, duplicate edges and node names, a second Input, renamed nodes);
- wrong types, missing and extra fields, negative sizes and huge shapes
  ([100000, 100000, 100000]) in generated graphs, plus Python-only types for ``from_dict``;
- deep nesting, NaN/Infinity, duplicate keys, and garbage bytes (random, truncated,
  bit-flipped, not UTF-8).

The property: a document loads, or raises ``GraphError`` (a ``QsnnError``) with a short
message; never another exception, never a hang (a CPU-time guard, SIGPROF, per document), and the huge
shape cases allocate little (``tracemalloc`` peak below 200 MB).
"""

from __future__ import annotations

import contextlib
import copy
import json
import signal
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from graph_factory import make_graph, random_input
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qsnn_deploy.errors import GraphError, QsnnError
from qsnn_deploy.exporters.json_graph import read_graph_json, to_graph_json
from qsnn_deploy.ir import Graph

HUGE = [100000, 100000, 100000]
PEAK_LIMIT = 200 * 2**20
SECONDS_PER_DOCUMENT = 10


def fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# --- the valid starting point ---------------------------------------------------------------------

BASE_GRAPH = make_graph(1, size=4, conv_channels=2, n_out=3)
BASE_DOC = to_graph_json(BASE_GRAPH, target="int4-core", timesteps=3, golden=random_input(BASE_GRAPH, 2, 7))


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every path (a tuple of keys and indices) to a value inside ``value``, root excluded."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


PATHS = sorted(_paths(BASE_DOC), key=repr)
TENSOR_PATHS = [p for p in PATHS if isinstance(_get(BASE_DOC, p), dict) and set(_get(BASE_DOC, p)) == {"dtype", "shape", "values"}]
NODE_NAMES = sorted(BASE_DOC["graph"]["nodes"])


def test_base_document_is_valid_and_covers_every_section() -> None:
    graph, target, meta = read_graph_json_bytes(render(BASE_DOC).encode())
    assert graph == BASE_GRAPH and target is not None and len(meta["golden"]) == 2
    assert len(PATHS) > 100 and len(TENSOR_PATHS) >= 6  # weights, thresholds, biases, golden inputs


# --- rendering: JSON text with duplicate keys and raw fragments ------------------------------------


class Dup(list):
    """An object rendered from (key, value) pairs, so keys may repeat."""


class Raw(str):
    """JSON text inserted as is (deep nesting, NaN, ...)."""


def render(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Dup):
        return "{" + ",".join(f"{json.dumps(k)}:{render(v)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    return json.dumps(value, allow_nan=True)


# --- the property -----------------------------------------------------------------------------------


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    # CPU time, not wall time: a runaway reader burns CPU, while a test run sharing the cores with
    # a training job merely waits (a wall-clock limit failed the suite that way).
    def alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s of CPU time")

    old = signal.signal(signal.SIGPROF, alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def _check_error(exc: GraphError) -> None:
    assert isinstance(exc, QsnnError) and exc.exit_code == 5
    msg = str(exc)
    assert msg and len(msg) <= 1000 and "\n" not in msg, msg[:2000]


@pytest.fixture(scope="module")
def doc_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "graph.json"


_PATH = None  # set by the module fixture below; hypothesis examples reuse one file


@pytest.fixture(scope="module", autouse=True)
def _bind_path(doc_path):
    global _PATH
    _PATH = doc_path
    yield
    _PATH = None


def read_graph_json_bytes(data: bytes) -> Any:
    """read_graph_json on a file holding ``data``: the result, or None after a GraphError."""
    _PATH.write_bytes(data)
    with time_limit(SECONDS_PER_DOCUMENT):
        try:
            graph, target, meta = read_graph_json(_PATH)
        except GraphError as exc:
            _check_error(exc)
            return None
    assert isinstance(graph, Graph)
    assert Graph.from_dict(graph.to_dict()) == graph  # what loads is a proper graph
    return graph, target, meta


def from_dict_only_graph_error(data: Any) -> Graph | None:
    with time_limit(SECONDS_PER_DOCUMENT):
        try:
            return Graph.from_dict(data)
        except GraphError as exc:
            _check_error(exc)
            return None


# --- hostile values ---------------------------------------------------------------------------------

EDGE_INTS = [0, -1, 1, 2, 3, 7, 8, 255, 256, 65536, 65537, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30)]
DEEP = [Raw("[" * n + "]" * n) for n in (50, 1000, 100_000)] + [Raw('{"a":' * 5000 + "1" + "}" * 5000)]
NON_FINITE = [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e999"), Raw("-0.0"), Raw("1" + "0" * 5000)]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(EDGE_INTS),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "INT4",
            "UINT8",
            "INT64",
            "UINT64",
            "INT65",
            "INT0",
            "int8",
            "INT4_NARROW",
            "UINT4_NARROW",
            "LIF",
            "Input",
            "Output",
            "static",
            "frames",
            "",
            "\u0000",
            "\ud800",
        ]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)
hostile = st.one_of(
    json_values,
    st.sampled_from([HUGE, [-1, 3], [0], [], [2**63, 2], [1.5, 2], ["3"], [[1]], {}, [], HUGE * 3]),
    st.sampled_from(DEEP + NON_FINITE),
    st.just(list(range(2000))),  # a long list (longer ones: test_long_lists_and_big_documents)
)


# --- 1. mutations of the real document (read_graph_json) ------------------------------------------


def _set(doc: Any, path: tuple, value: Any) -> None:
    _get(doc, path[:-1])[path[-1]] = value


@st.composite
def mutated_documents(draw: st.DrawFn) -> str:
    doc = copy.deepcopy(BASE_DOC)
    kind = draw(
        st.sampled_from(["replace", "replace", "delete", "extra", "beyond_width", "int64_edge", "huge_shape", "structure", "rename"])
    )
    if kind in ("replace", "delete", "extra"):
        path = draw(st.sampled_from(PATHS))
        parent = _get(doc, path[:-1])
        if kind == "replace":
            parent[path[-1]] = draw(hostile)
        elif kind == "delete":
            del parent[path[-1]]
        else:
            target = _get(doc, path)
            if isinstance(target, dict):
                target[draw(st.sampled_from(["extra", "op", "weights", "Shape", ""]))] = draw(hostile)
            elif isinstance(target, list):
                target.append(draw(hostile))
            else:
                parent[path[-1]] = [target, draw(hostile)]
    elif kind == "beyond_width":
        tensor = _get(doc, draw(st.sampled_from(TENSOR_PATHS)))
        from qsnn_deploy.ir.dtypes import IntType

        dtype = IntType.parse(tensor["dtype"])
        over = draw(st.sampled_from([1, 2, 2**20, 2**70]))
        i = draw(st.integers(0, max(len(tensor["values"]) - 1, 0)))
        if tensor["values"]:
            tensor["values"][i] = dtype.max + over if draw(st.booleans()) else dtype.min - over
        else:
            tensor["values"] = [dtype.max + over]
        if draw(st.booleans()):  # or narrow the declared type below the values
            tensor["dtype"] = draw(st.sampled_from(["INT1", "UINT1", "INT2_NARROW", "UINT2"]))
    elif kind == "int64_edge":  # 64-bit declared types at and beyond what int64 storage holds
        tensor = _get(doc, draw(st.sampled_from(TENSOR_PATHS)))
        tensor["dtype"] = draw(st.sampled_from(["UINT64", "INT64"]))
        edge = draw(st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]))
        if tensor["dtype"] == "UINT64":
            tensor["values"] = [abs(v) for v in tensor["values"]]
        if tensor["values"]:
            tensor["values"][draw(st.integers(0, len(tensor["values"]) - 1))] = edge
    elif kind == "huge_shape":
        choices = TENSOR_PATHS + [("graph", "nodes", n, "shape") for n in NODE_NAMES if "shape" in BASE_DOC["graph"]["nodes"][n]]
        path = draw(st.sampled_from(choices))
        shape = draw(st.sampled_from([HUGE, [100000, 100000], [65536, 65536, 65536], [2**40], [-4, 2], [0, 3], [2**31] * 8]))
        target = _get(doc, path)
        if isinstance(target, dict):
            target["shape"] = shape
        else:
            _set(doc, path, shape)
    elif kind == "structure":
        edges = doc["graph"]["edges"]
        action = draw(
            st.sampled_from(
                [
                    "cycle",
                    "self_loop",
                    "dangling",
                    "dangling_src",
                    "duplicate",
                    "drop",
                    "reverse",
                    "second_input",
                    "second_output",
                    "swap_nodes",
                    "dup_node_name",
                    "branch",
                ]
            )
        )
        if action == "cycle":
            edges.append(["output", "input"] if draw(st.booleans()) else ["lif2", "conv1"])
        elif action == "self_loop":
            edges.append([n := draw(st.sampled_from(NODE_NAMES)), n])
        elif action == "dangling":
            edges.append([draw(st.sampled_from(NODE_NAMES)), "ghost"])
        elif action == "dangling_src":
            edges[draw(st.integers(0, len(edges) - 1))][0] = "ghost"
        elif action == "duplicate":
            edges.append(list(edges[draw(st.integers(0, len(edges) - 1))]))
        elif action == "drop":
            del edges[draw(st.integers(0, len(edges) - 1))]
        elif action == "reverse":
            e = edges[draw(st.integers(0, len(edges) - 1))]
            e.reverse()
        elif action == "second_input":
            doc["graph"]["nodes"]["input2"] = copy.deepcopy(doc["graph"]["nodes"]["input"])
            edges.append(["input2", "conv1"])
        elif action == "second_output":
            doc["graph"]["nodes"]["output2"] = {"op": "Output"}
            edges.append(["lif2", "output2"])
        elif action == "swap_nodes":
            a, b = draw(st.lists(st.sampled_from(NODE_NAMES), min_size=2, max_size=2, unique=True))
            nodes = doc["graph"]["nodes"]
            nodes[a], nodes[b] = nodes[b], nodes[a]
        elif action == "branch":
            doc["graph"]["nodes"]["flat2"] = {"op": "Flatten"}
            edges.append(["lif1", "flat2"])
        else:  # a node name repeated in the text: the second definition would silently win
            nodes = doc["graph"]["nodes"]
            name = draw(st.sampled_from(NODE_NAMES))
            other = draw(st.sampled_from(NODE_NAMES))
            doc["graph"]["nodes"] = Dup([*nodes.items(), (name, nodes[other])])
    else:  # rename a node without touching its edges (dangling on both sides)
        nodes = doc["graph"]["nodes"]
        old = draw(st.sampled_from(NODE_NAMES))
        nodes[draw(st.sampled_from(["renamed", "", " ", "input\u0000", "x" * 300]))] = nodes.pop(old)
    return render(doc)


@fuzz_settings(450)
@given(mutated_documents())
def test_mutated_documents_raise_only_graph_error(text: str) -> None:
    read_graph_json_bytes(text.encode("utf-8", "surrogatepass"))
    try:  # the same graph, as Python's lenient json module parses it (NaN, last duplicate wins)
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return
    if isinstance(parsed, dict) and "graph" in parsed:
        from_dict_only_graph_error(parsed["graph"])


@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
def test_uint64_values_beyond_int64_storage(value: int) -> None:
    """Found by the fuzzer: UINT64 admits values the IR's int64 arrays cannot hold."""
    graph = copy.deepcopy(BASE_DOC["graph"])
    graph["nodes"]["fc"]["weight"] = _tensor([1, 1], [value], "UINT64")
    assert from_dict_only_graph_error(graph) is None
    assert read_graph_json_bytes(render({**BASE_DOC, "graph": graph}).encode()) is None


def test_every_structural_damage_is_refused() -> None:
    """Not just 'no crash': each of these is a broken graph and must be refused."""
    base = BASE_DOC["graph"]
    cases = {
        "cycle": {**base, "edges": [*base["edges"], ["lif2", "conv1"]]},
        "dangling": {**base, "edges": [*base["edges"], ["lif2", "ghost"]]},
        "duplicate edge": {**base, "edges": [*base["edges"], base["edges"][0]]},
        "no edges": {**base, "edges": []},
        "second output": {**base, "nodes": {**base["nodes"], "o2": {"op": "Output"}}, "edges": [*base["edges"], ["lif2", "o2"]]},
    }
    for what, graph in cases.items():
        assert read_graph_json_bytes(render({**BASE_DOC, "graph": graph}).encode()) is None, what
        assert from_dict_only_graph_error(graph) is None, what
    nodes = base["nodes"]
    dup = Dup([*nodes.items(), ("lif1", nodes["lif2"])])
    assert read_graph_json_bytes(render({**BASE_DOC, "graph": {**base, "nodes": dup}}).encode()) is None


# --- 2. generated graphs (Graph.from_dict, and the reader) ------------------------------------------


def _tensor(shape: Any, values: Any, dtype: Any = "INT8") -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "values": values}


small_shapes = st.lists(st.integers(-2, 4), min_size=0, max_size=4)
shapes = st.one_of(small_shapes, st.sampled_from([HUGE, [65536, 65536, 65536], [2**62, 2**62], [-(10**6)], [3.0, 1]]))


@st.composite
def tensors(draw: st.DrawFn) -> Any:
    shape = draw(shapes)
    count = 1
    for s in shape if isinstance(shape, list) else []:
        count *= s if isinstance(s, int) else 1
    n = count if 0 <= count <= 64 and draw(st.booleans()) else draw(st.integers(0, 6))
    values = draw(st.lists(st.one_of(st.integers(-200, 200), st.sampled_from(EDGE_INTS)), min_size=n, max_size=n))
    dtype = draw(st.sampled_from(["INT8", "INT4_NARROW", "UINT8", "INT24", "UINT64", "INT64", "INT1", "FLOAT32", 8]))
    t = _tensor(shape, values, dtype)
    if draw(st.randoms(use_true_random=True)).random() < 0.1:  # (st.integers would favour its bounds)
        t = draw(st.sampled_from([{}, [], None, 3, {**t, "extra": 1}, {"dtype": dtype, "shape": shape}]))
    return t


def _pairs(lo: int = 0) -> Any:
    return st.one_of(
        st.lists(st.integers(lo - 1, 3), min_size=2, max_size=2), st.sampled_from([[1], [1, 2, 3], [10**30, 1], [1, True], None, "11"])
    )


nodes = st.one_of(
    st.fixed_dictionaries(
        {"op": st.just("Input"), "shape": shapes, "dtype": st.sampled_from(["UINT8", "INT8", "UINT1", "X"])},
        optional={"encoding": st.sampled_from(["static", "frames", "video", 1])},
    ),
    st.fixed_dictionaries({"op": st.just("Conv2d"), "weight": tensors()}, optional={"stride": _pairs(1), "padding": _pairs(0)}),
    st.fixed_dictionaries({"op": st.just("SumPool2d"), "kernel": _pairs(1), "stride": _pairs(1)}),
    st.fixed_dictionaries({"op": st.just("Flatten")}, optional={"axis": st.integers()}),
    st.fixed_dictionaries({"op": st.just("Linear"), "weight": tensors()}),
    st.fixed_dictionaries(
        {
            "op": st.just("LIF"),
            "threshold": tensors(),
            "bias": tensors(),
            "decay_mul": st.sampled_from(EDGE_INTS + [1.5, "3"]),
            "decay_shift": st.sampled_from([0, 8, 30, 31, -1, True, 8.0]),
            "state": st.sampled_from(["INT24", "INT48", "INT49", "UINT8", "INT8"]),
        },
        optional={
            "input_shift": st.sampled_from([0, 2, 40, 41, -1]),
            "reset": st.sampled_from(["subtract", "zero", "none"]),
            "overflow": st.sampled_from(["saturate", "wrap", "error", "ignore"]),
            "compare": st.sampled_from(["gt", "lt"]),
        },
    ),
    st.fixed_dictionaries({"op": st.just("Output")}, optional={"readout": st.sampled_from(["spike_count", "membrane"])}),
    st.sampled_from([{"op": "Sigmoid"}, {"op": None}, {}, {"op": ["LIF"]}, [], "LIF", None, 7]),
)
REAL_NODES = [BASE_DOC["graph"]["nodes"][n] for n in NODE_NAMES]


@st.composite
def real_nodes(draw: st.DrawFn) -> Any:
    """A node of the base graph, often with one field replaced by a generated value."""
    node = copy.deepcopy(draw(st.sampled_from(REAL_NODES)))
    if draw(st.booleans()):
        field = draw(st.sampled_from(sorted(node)))
        node[field] = draw(st.one_of(tensors(), shapes, _pairs(0), json_scalars))
    return node


node_names = st.sampled_from(["input", "conv1", "pool1", "lif1", "flatten", "fc", "lif2", "output", "a", ""])


@st.composite
def graph_dicts(draw: st.DrawFn) -> Any:
    """Input, 0-5 nodes and Output, mostly chained in order; with random damage."""
    rnd = draw(st.randoms(use_true_random=True))
    middle = draw(st.lists(st.tuples(node_names, st.one_of(nodes, real_nodes())), max_size=5))
    named = {
        "input": draw(nodes) if rnd.random() < 0.2 else draw(real_nodes().filter(lambda n: n.get("op") == "Input")),
        **dict(middle),
        "output": {"op": "Output"},
    }
    names = list(named)
    edges: list[Any] = [[a, b] for a, b in zip(names, names[1:])]
    for _ in range(draw(st.integers(0, 3)) if rnd.random() < 0.5 else 0):  # cycles, dangling ends, branches
        edges.insert(rnd.randrange(len(edges) + 1), [rnd.choice(names + ["ghost"]), rnd.choice(names + ["ghost"])])
    if rnd.random() < 0.1:
        edges.append(draw(st.sampled_from([["a"], ["a", "b", "c"], "ab", None, [1, 2], [["a"], "b"]])))
    if rnd.random() < 0.1:
        edges = edges[::-1]
    data: Any = {"nodes": named, "edges": edges}
    if rnd.random() < 0.3:
        data["metadata"] = draw(st.one_of(json_values, st.dictionaries(st.text(max_size=4), json_values, max_size=3)))
    if rnd.random() < 0.1:
        data = draw(st.sampled_from([{**data, "nodes": list(named.items())}, {"edges": edges}, {"nodes": named}, [data], None]))
    return data


@fuzz_settings(300)
@given(graph_dicts())
def test_generated_graphs_raise_only_graph_error(data: Any) -> None:
    from_dict_only_graph_error(data)
    read_graph_json_bytes(render({**BASE_DOC, "graph": data, "golden": None}).encode("utf-8", "surrogatepass"))


python_only = st.sampled_from([(1, 2), {1, 2}, b"INT8", bytearray(b"x"), float("nan"), float("inf"), object(), 1j, range(3), Ellipsis])


@st.composite
def python_mutated_graphs(draw: st.DrawFn) -> Any:
    """The base graph dict with one value replaced by a non-JSON Python object or a hostile value."""
    graph = copy.deepcopy(BASE_DOC["graph"])
    path = draw(st.sampled_from(sorted(_paths(graph), key=repr)))
    _get(graph, path[:-1])[path[-1]] = draw(st.one_of(python_only, hostile.filter(lambda v: not isinstance(v, Raw))))
    return graph


@fuzz_settings(200)
@given(python_mutated_graphs())
def test_graph_from_dict_with_python_objects_raises_only_graph_error(data: Any) -> None:
    from_dict_only_graph_error(data)


# --- 3. arbitrary JSON and garbage bytes ------------------------------------------------------------


@fuzz_settings(100)
@given(
    st.one_of(
        json_values,
        st.dictionaries(st.sampled_from(["format", "version", "graph", "target", "timesteps", "golden", "x"]), json_values, max_size=6),
    ),
    st.booleans(),
)
def test_arbitrary_json_raises_only_graph_error(value: Any, stamped: bool) -> None:
    if stamped and isinstance(value, dict):  # get past the format/version check into the schema and the IR
        value = {**value, "format": "qsnn-deploy-graph", "version": 1}
    read_graph_json_bytes(render(value).encode("utf-8", "surrogatepass"))


BASE_BYTES = render(BASE_DOC).encode()


@st.composite
def garbage(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "spliced", "bom", "invalid_utf8"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    if kind == "truncated":
        return BASE_BYTES[: draw(st.integers(0, len(BASE_BYTES) - 1))]
    if kind == "flipped":
        data = bytearray(BASE_BYTES)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "spliced":
        i = draw(st.integers(0, len(BASE_BYTES)))
        return BASE_BYTES[:i] + draw(st.binary(min_size=1, max_size=16)) + BASE_BYTES[i:]
    if kind == "bom":
        return b"\xef\xbb\xbf" + BASE_BYTES
    i = draw(st.integers(0, len(BASE_BYTES)))
    return BASE_BYTES[:i] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xf4\x90\x80\x80"])) + BASE_BYTES[i:]


@fuzz_settings(200)
@given(garbage())
def test_garbage_bytes_raise_only_graph_error(data: bytes) -> None:
    read_graph_json_bytes(data)


@pytest.mark.parametrize("fragment", DEEP + NON_FINITE, ids=lambda r: r[:12])
def test_deep_nesting_and_non_finite_numbers(fragment: Raw) -> None:
    for path in [
        ("graph", "metadata"),
        ("golden",),
        ("graph", "nodes", "lif1", "decay_mul"),
        ("target", "limits"),
        ("graph", "nodes", "fc", "weight", "values"),
    ]:
        doc = copy.deepcopy(BASE_DOC)
        _set(doc, path, fragment)
        read_graph_json_bytes(render(doc).encode())


def test_duplicate_keys_in_a_large_object_are_found_quickly() -> None:
    """A duplicate key among many: the reader must not compare every pair of keys."""
    many = Dup([(f"k{i}", i) for i in range(200_000)] + [("k7", 0)])
    doc = copy.deepcopy(BASE_DOC)
    doc["graph"]["metadata"] = many
    data = render(doc).encode()
    start = time.process_time()  # CPU time: see time_limit
    assert read_graph_json_bytes(data) is None
    assert time.process_time() - start < 5


def test_long_lists_and_big_documents(monkeypatch) -> None:
    """A 50,000-value list where a 24-value tensor belongs, in metadata, and a too-big file."""
    for path in [("graph", "nodes", "fc", "weight", "values"), ("graph", "metadata"), ("golden",)]:
        doc = copy.deepcopy(BASE_DOC)
        _set(doc, path, list(range(50_000)))
        assert read_graph_json_bytes(json.dumps(doc).encode()) is None or path == ("graph", "metadata")
    import qsnn_deploy.exporters.json_graph as json_graph

    monkeypatch.setattr(json_graph, "MAX_DOCUMENT_BYTES", len(BASE_BYTES) - 1)
    assert read_graph_json_bytes(BASE_BYTES) is None  # over the size limit, however valid


def test_largest_node_count_loads_in_linear_time() -> None:
    """MAX_NODES (10,000) nodes in a chain, and 40,000 edges: answered in seconds, not minutes."""
    from qsnn_deploy.ir.graph import MAX_NODES

    names = ["in", *[f"f{i}" for i in range(MAX_NODES - 2)], "out"]
    nodes = {"in": {"op": "Input", "shape": [4], "dtype": "UINT8"}, **{n: {"op": "Flatten"} for n in names[1:-1]}, "out": {"op": "Output"}}
    chain = [[a, b] for a, b in zip(names, names[1:])]
    start = time.process_time()  # CPU time: see time_limit
    graph = from_dict_only_graph_error({"nodes": nodes, "edges": chain})
    assert graph is not None and len(graph.chain()) == MAX_NODES
    dense = chain + [[names[i], names[j]] for i in range(1, 1500) for j in range(i + 2, i + 22)][: 4 * MAX_NODES - len(chain)]
    assert from_dict_only_graph_error({"nodes": nodes, "edges": dense}) is None  # nodes with several inputs
    cyclic = chain + [["out", "f0"]]
    assert from_dict_only_graph_error({"nodes": nodes, "edges": cyclic}) is None
    assert time.process_time() - start < 10


# --- 4. huge shapes allocate nothing big ------------------------------------------------------------


def _huge_documents() -> dict[str, dict[str, Any]]:
    base = BASE_DOC
    g = base["graph"]

    def with_node(name: str, **fields: Any) -> dict[str, Any]:
        doc = copy.deepcopy(base)
        doc["graph"]["nodes"][name].update(fields)
        return doc

    golden_huge = copy.deepcopy(base)
    golden_huge["golden"][0]["input"]["shape"] = HUGE
    golden_counts = copy.deepcopy(base)
    golden_counts["golden"][0]["output_counts"] = [0] * 5
    golden_counts["timesteps"] = 2**62
    return {
        "conv-weight": with_node("conv1", weight=_tensor(HUGE, [1, 2, 3], "INT4_NARROW")),
        "conv-weight-4d": with_node("conv1", weight=_tensor([100000] * 4, [], "INT4_NARROW")),
        "linear-weight-zero-dim": with_node("fc", weight=_tensor([0, 100000, 100000, 100000], [], "INT4_NARROW")),
        "input-shape": with_node("input", shape=HUGE),
        "input-shape-at-limit": with_node("input", shape=[1, 65536, 65536]),
        "threshold": with_node("lif1", threshold=_tensor(HUGE, [5], g["nodes"]["lif1"]["threshold"]["dtype"])),
        "padding": with_node("conv1", padding=[10**6, 10**6]),
        "padding-python-huge": with_node("conv1", padding=[10**30, 10**30]),
        "stride": with_node("pool1", stride=[10**30, 10**30], kernel=[1, 1]),
        "golden-input": golden_huge,
        "golden-timesteps": golden_counts,
        "negative": with_node("conv1", weight=_tensor([-100000, -100000, 1, 1], [], "INT4_NARROW")),
    }


HUGE_DOCS = _huge_documents()


@pytest.mark.parametrize("case", sorted(HUGE_DOCS))
def test_huge_shapes_are_refused_without_allocating(case: str) -> None:
    data = render(HUGE_DOCS[case]).encode()
    tracemalloc.start()
    try:
        result = read_graph_json_bytes(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result is None, case
    assert peak < PEAK_LIMIT, f"{case}: peak {peak / 2**20:.0f} MiB"


@fuzz_settings(60)
@given(
    st.sampled_from(TENSOR_PATHS + [("graph", "nodes", "input")]),
    st.lists(st.sampled_from([100000, 65536, 2**31, 2**40, 10**30, 1, 0]), min_size=1, max_size=6),
)
def test_huge_shapes_anywhere_stay_small(path: tuple, shape: list[int]) -> None:
    doc = copy.deepcopy(BASE_DOC)
    _get(doc, path)["shape"] = shape
    data = render(doc).encode()
    tracemalloc.start()
    try:
        read_graph_json_bytes(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.0f} MiB"
