"""A torch.fx graph (traced, or a torch.export program's) -> the layers of a ModelGraph."""

from __future__ import annotations

import numpy as np

from ... import graph as g
from ...graph import Layer, ModelGraph, Tensor
from ..patterns import fold_decomposed_ops
from .classify import _classify_function, _function_name, classify_module
from .op_tables import _COMPOSITE_ACTIVATIONS, _FUNCTION_PASSTHROUGH, _NORM_CLASS, _SHAPE_FUNCTIONS
from .tensors import _share_tensors, tensor_of


def _module_path(node, strip_prefix: str = "") -> str | None:
    stack = node.meta.get("nn_module_stack") if hasattr(node, "meta") else None
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    if not isinstance(path, str) or not path or "[" in path:  # strict-mode paths look like L['self'].fc
        return None
    return path[len(strip_prefix):] if strip_prefix and path.startswith(strip_prefix) else path


def _trace_keeping_norms(torch, module):
    """torch.fx tracing that keeps normalization modules whole: a hand-written RMSNorm is one
    layer to its user, not a pow/mean/rsqrt/mul chain."""

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, child, qualified_name):
            return bool(_NORM_CLASS.search(type(child).__name__)) or super().is_leaf_module(child, qualified_name)

    return torch.fx.GraphModule(module, Tracer().trace(module))


def _graph_from_fx(torch, root, traced, graph: ModelGraph, lifted: dict[str, Tensor] | None = None, strip_prefix: str = "") -> None:
    """``lifted``: for a torch.export graph, the placeholders that are parameters, buffers or
    constants (by placeholder name); layers are then named after their weight's module."""
    modules = dict(root.named_modules()) if root is not None else {}
    consts: dict[str, Tensor] = {}
    shape_only: set[str] = set()
    produced: dict[str, str] = {}  # fx node name -> layer name
    used: set[str] = set()
    aten = lifted is not None
    open_call: tuple[str, str] | None = None  # (module-call key, layer name) of a composite module
    for node in traced.graph.nodes:
        inputs = [n for n in node.all_input_nodes]
        if node.op == "placeholder":
            if aten and node.name in lifted:
                consts[node.name] = lifted[node.name]
                continue
            value = node.meta.get("val") if hasattr(node, "meta") else None
            shape = tuple(d if isinstance(d, int) else None for d in getattr(value, "shape", ()))
            dtype = str(getattr(value, "dtype", "torch.float32")).replace("torch.", "")
            graph.inputs[node.name] = (shape, dtype)
            continue
        if aten and node.op == "call_function" and inputs and all(n.name in consts or n.name in shape_only for n in inputs):
            # Computed from constants only (a transposed weight, a buffer update): not a layer.
            const_inputs = [consts[n.name] for n in inputs if n.name in consts]
            if _function_name(node.target) in _FUNCTION_PASSTHROUGH and len(const_inputs) == 1:
                consts[node.name] = const_inputs[0]
            else:
                shape_only.add(node.name)
            continue
        if node.op == "get_attr":
            value = _fetch_attr(root, node.target)
            if isinstance(value, torch.Tensor):
                consts[node.name] = graph.tensors.get(node.target) or tensor_of(node.target, value)
            continue
        if node.op == "output":
            for producer in inputs:
                if producer.name in produced:
                    graph.add(Layer(name=f"output:{producer.name}", kind=g.OUTPUT, op="output", inputs=[produced[producer.name]]))
            continue
        fname = _function_name(node.target) if node.op != "call_module" else ""
        if node.op != "call_module" and (fname in _SHAPE_FUNCTIONS or (inputs and all(n.name in shape_only or n.name in consts for n in inputs) and not _has_tensor_const(inputs, consts))):
            shape_only.add(node.name)
            continue
        composite = _composite_module(node, strip_prefix) if node.op != "call_module" else None
        if composite is not None and open_call is not None and open_call[0] == composite[0]:
            # Another op of the same module call (RMSNorm's rsqrt, gelu_new's tanh): it joins that one layer.
            layer = graph.layers[open_call[1]]
            for producer in inputs:
                source = produced.get(producer.name)
                if source is not None and source != layer.name and source not in layer.inputs:
                    layer.inputs.append(source)
                elif layer.kind == g.NORM and producer.name in consts:
                    _add_norm_param(layer, consts[producer.name])
            graph.__dict__.pop("_consumers", None)
            graph.__dict__.pop("depth", None)
            produced[node.name] = layer.name
            continue
        open_call = None
        if node.op == "call_module":
            name = node.target
            if name in used:
                name = f"{name}#{node.name}"  # a module called twice (shared weights)
            layer = Layer(name=name, kind=g.OTHER, op=type(modules[node.target]).__name__)
            classify_module(torch, layer, modules[node.target], node.target)
            _share_tensors(graph, layer)
        elif composite is not None:
            key, path, class_name, kind, activation = composite
            name = path if path not in used and path not in graph.layers else f"{path}#{node.name}"
            if kind == g.NORM:
                layer = Layer(name=name, kind=g.OTHER, op=fname)
                _classify_function(layer, fname, node, inputs, consts)  # aten layer_norm/batch_norm: params by role
                layer.kind, layer.op = g.NORM, class_name
                for producer in inputs:
                    if producer.name in consts and not any(t is consts[producer.name] for t in layer.params.values()):
                        _add_norm_param(layer, consts[producer.name])
            else:
                layer = Layer(name=name, kind=g.ACTIVATION, op=class_name, attrs={"activation": activation})
            open_call = (key, name)
        else:
            layer = Layer(name=node.name, kind=g.OTHER, op=fname)
            _classify_function(layer, fname, node, inputs, consts)
            owner = layer.params.get("weight") or layer.params.get("bias")
            if aten and owner is not None:
                # Named as the module is (fc2), from export's module stack or else the weight's name.
                layer.name = _module_path(node, strip_prefix) or (owner.name.rsplit(".", 1)[0] if "." in owner.name else node.name)
                if layer.name in used or layer.name in graph.layers:
                    layer.name = f"{layer.name}#{node.name}"  # a module called twice (shared weights)
        layer.source = _source_of(node)
        used.add(layer.name)
        for position, producer in enumerate(inputs):
            if producer.name in produced:
                layer.inputs.append(produced[producer.name])
            elif producer.name in consts and not any(t is consts[producer.name] for t in layer.params.values()):
                layer.const_inputs[position] = consts[producer.name]
        arithmetic = layer.kind == g.MUL or fname in _SCALAR_OPERAND_OPS
        for position, arg in enumerate(node.args):  # python scalars: `x * 2.0`, `x / 4`, `x + 3`
            if isinstance(arg, (int, float)) and not isinstance(arg, bool) and arithmetic:
                value = np.asarray(float(arg), dtype=np.float32)
                # At the argument's position, which says which side of `c / x` or `c - x` it is.
                key = position if position not in layer.const_inputs else len(layer.const_inputs) + 100
                layer.const_inputs[key] = Tensor(f"{node.name}.scalar", (), "float32", lambda value=value: value)
        graph.add(layer)
        produced[node.name] = layer.name
    fold_decomposed_ops(graph)  # hand-written activations: x * relu6(x + 3) / 6 is a Hardswish


# Elementwise ops whose python-scalar operand is a scale or a shift the signal model applies.
_SCALAR_OPERAND_OPS = {"add", "iadd", "sub", "isub", "rsub", "mul", "imul", "truediv", "itruediv", "div", "pow"}


def _composite_module(node, strip_prefix: str = "") -> tuple[str, str, str, str, str | None] | None:
    """(module-call key, module path, class name, kind, activation) when ``node`` is an op inside
    a module that is one layer to its user but traces as several ops: the activation modules
    above, and normalization modules (HF's RMSNorm is pow, mean, rsqrt and mul)."""
    stack = node.meta.get("nn_module_stack") if hasattr(node, "meta") else None
    if not stack:
        return None
    key, value = list(stack.items())[-1]
    path, cls = value if isinstance(value, tuple) and len(value) == 2 else (None, None)
    class_name = getattr(cls, "__name__", None) or str(cls).rsplit(".", 1)[-1].strip("'>")
    activation = _COMPOSITE_ACTIVATIONS.get(class_name)
    kind = g.ACTIVATION if activation is not None else g.NORM if _NORM_CLASS.search(class_name) else None
    if kind is None or not isinstance(path, str):
        return None
    if not path or "[" in path:  # strict-mode paths look like L['self'].act: name the layer after the node
        path = node.name
    path = path[len(strip_prefix):] if strip_prefix and path.startswith(strip_prefix) else path
    return str(key), path, class_name, kind, activation


def _add_norm_param(layer: Layer, tensor: Tensor) -> None:
    """A hand-written norm's 1-D constants: its scale, then its shift."""
    if tensor.ndim == 1:
        layer.params.setdefault("weight" if "weight" not in layer.params else "bias", tensor)


def _has_tensor_const(inputs, consts) -> bool:
    return any(n.name in consts for n in inputs)


def _fetch_attr(root, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _source_of(node) -> str | None:
    trace = node.meta.get("stack_trace") if hasattr(node, "meta") else None
    if not trace:
        return None
    last = [line for line in trace.strip().splitlines() if line.strip().startswith("File ")]
    return last[-1].strip() if last else None
