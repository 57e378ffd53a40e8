"""TorchScript archives: their inlined graph walked into layers, classified as fx nodes are."""

from __future__ import annotations

import warnings

from ... import graph as g
from ...errors import InitlintError
from ...graph import Layer, ModelGraph, Tensor
from .classify import _classify_function
from .module_graph import _graph_from_module_order
from .op_tables import _SHAPE_FUNCTIONS
from .quiet import _short
from .tensors import tensor_of


def _load_torchscript(torch, target: str) -> ModelGraph:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
            module = torch.jit.load(target, map_location="cpu")
    except Exception as exc:
        raise InitlintError(target, f"not a loadable TorchScript archive ({type(exc).__name__}: {_short(exc)})") from None

    def empty_graph() -> ModelGraph:
        graph = ModelGraph(target=target, format="torchscript")
        for name, param in module.named_parameters():
            graph.tensors[name] = tensor_of(name, param)
        return graph

    graph = empty_graph()
    try:
        _graph_from_torchscript(torch, module, graph)
        return graph
    except Exception as exc:  # an unusual TorchScript graph: fall back to what the modules say
        failure = f"{type(exc).__name__}: {_short(exc)[:120]}"
    graph = empty_graph()
    _graph_from_module_order(torch, module, graph)
    graph.notes.append(
        f"TorchScript: its inlined graph could not be read ({failure}); the graph follows the order in which submodules "
        "were registered, so residual connections and functional activations are not seen"
    )
    return graph


class _JitValue:
    """A TorchScript graph value in the shape the fx classifiers read (``.name``)."""

    def __init__(self, name: str):
        self.name = name


class _JitNode:
    """A TorchScript node in the shape the fx classifiers read (``.args``, ``.kwargs``)."""

    def __init__(self, args: list):
        self.args = args
        self.kwargs: dict = {}


def _graph_from_torchscript(torch, module, graph: ModelGraph) -> None:
    """Layers from the module's inlined TorchScript graph, classified like torch.fx / torch.export
    nodes. An ``if`` on a constant (F.relu's ``inplace``) is followed into the branch it takes;
    other control flow (BatchNorm's input checks) is skipped."""
    jit_graph = module.inlined_graph
    state = _JitState(torch, graph)
    inputs = list(jit_graph.inputs())
    state.owners[inputs[0].debugName()], state.paths[inputs[0].debugName()] = module, ""
    for value in inputs[1:]:
        graph.inputs[value.debugName()] = ((), "float32")
    state.walk(jit_graph.nodes())
    for value in jit_graph.outputs():
        for name in state.items(value.debugName()):
            state.hidden_used |= name in state.hidden
            if name in state.produced:
                layer_name = state.produced[name]
                graph.add(Layer(name=f"output:{layer_name}", kind=g.OUTPUT, op="output", inputs=[layer_name]))
    if not any(layer.kind != g.OUTPUT for layer in graph.layers.values()):
        raise ValueError("no operations found in the TorchScript graph")
    claimed = {t.name for layer in graph.layers.values() for t in layer.params.values()}
    missed = [name for name, t in graph.tensors.items() if t.ndim >= 2 and name not in claimed]
    if state.hidden_used and missed:
        raise ValueError(f"control flow hides the layers of {len(missed)} weight(s) such as {missed[0]}")
    if state.hidden_used:
        graph.notes.append("TorchScript: tensors computed inside if/loop blocks are not followed, so some edges may be missing")


class _JitState:
    def __init__(self, torch, graph: ModelGraph):
        self.torch, self.graph = torch, graph
        self.owners: dict[str, object] = {}  # value -> the module or tensor it refers to
        self.paths: dict[str, str] = {}  # value -> dotted attribute path from self
        self.consts: dict[str, Tensor] = {}
        self.lists: dict[str, list[str]] = {}  # ListConstruct / TupleConstruct value -> items
        self.alias: dict[str, str] = {}  # an if's output -> the value its taken branch returns
        self.produced: dict[str, str] = {}  # value -> layer name
        self.used: set[str] = set()
        self.hidden: set[str] = set()
        self.hidden_used = False

    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def items(self, name: str) -> list[str]:
        name = self.resolve(name)
        return [self.resolve(item) for item in self.lists.get(name, [name])]

    def known(self, name: str) -> bool:
        return name in self.consts or name in self.produced or name in self.graph.inputs

    def walk(self, nodes) -> None:
        for node in nodes:
            kind = node.kind()
            names = [self.resolve(v.debugName()) for v in node.inputs()]
            outputs = [v.debugName() for v in node.outputs()]
            if kind == "prim::GetAttr":
                self._get_attr(node, names[0], outputs[0])
            elif kind in ("prim::ListConstruct", "prim::TupleConstruct"):
                self.lists[outputs[0]] = names
            elif kind == "prim::If" and isinstance(self._condition(node, names[0]), bool):
                taken = list(node.blocks())[0 if self._condition(node, names[0]) else 1]
                self.walk(taken.nodes())
                for output, returned in zip(outputs, taken.outputs()):
                    self.alias[output] = self.resolve(returned.debugName())
            elif any(True for _ in node.blocks()):
                self.hidden.update(v.debugName() for v in node.outputs() if isinstance(v.type(), self.torch._C.TensorType))
            elif kind.startswith("aten::") and len(outputs) == 1:
                self._op(node, kind.split("::", 1)[1].strip("_"), names, outputs[0])

    def _condition(self, node, name: str):
        """A constant condition, or a bool module attribute (``self.training``, ``self.inplace``)."""
        value = _jit_constant(node, 0)
        return value if isinstance(value, bool) else self.owners.get(name)

    def _get_attr(self, node, parent: str, output: str) -> None:
        if parent not in self.owners:
            return
        attr = node.s("name")
        path = f"{self.paths[parent]}.{attr}" if self.paths[parent] else attr
        value = getattr(self.owners[parent], attr, None)
        self.owners[output], self.paths[output] = value, path
        if isinstance(value, self.torch.Tensor):
            self.consts[output] = self.graph.tensors.get(path) or tensor_of(path, value)

    def _op(self, node, fname: str, names: list[str], output: str) -> None:
        flat = list(dict.fromkeys(item for name in names for item in self.items(name)))  # unique, as fx's
        if any(name in self.hidden for name in flat):
            self.hidden_used = True
        if fname in _SHAPE_FUNCTIONS or not any(n in self.produced or n in self.graph.inputs for n in flat):
            return  # a size, or computed from constants only (a weight transpose)
        args = [_JitValue(n) if self.known(n) else _jit_constant(node, i) for i, n in enumerate(names)]
        inputs = [_JitValue(n) for n in flat if self.known(n)]
        layer = Layer(name=output, kind=g.OTHER, op=fname)
        _classify_function(layer, fname, _JitNode(args), inputs, self.consts)
        owner = layer.params.get("weight") or layer.params.get("bias")
        base = owner.name.rsplit(".", 1)[0] if owner is not None and "." in owner.name else fname
        layer.name = base if base not in self.used else f"{base}#{output}"
        self.used.add(layer.name)
        for position, value in enumerate(inputs):
            if value.name in self.produced:
                layer.inputs.append(self.produced[value.name])
            elif value.name in self.consts and not any(t is self.consts[value.name] for t in layer.params.values()):
                layer.const_inputs[position] = self.consts[value.name]
        self.graph.add(layer)
        self.produced[output] = layer.name


def _jit_constant(node, index: int):
    """The Python value of a constant input of a TorchScript node (None when not constant)."""
    value = list(node.inputs())[index]
    producer = value.node()
    if producer.kind() != "prim::Constant" or not producer.hasAttribute("value"):
        return None
    try:
        return value.toIValue()
    except Exception:
        return None
