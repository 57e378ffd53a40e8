"""Read an ONNX model into a ModelGraph without importing torch: the file checks and the node walk."""

from __future__ import annotations

import os
from pathlib import Path

import math

import numpy as np
import onnx
from onnx import TensorProto

from ... import graph as g
from ...errors import InitlintError
from ...graph import Layer, ModelGraph, Tensor
from .byte_sources import _RAW_DTYPES, FLOAT_TYPES, _Source, _tensor_from_proto
from .constant_folding import _alias_constant, _cast_is_float, _constant_node_tensor, _constant_of_shape, _Consts
from .exporter_names import _module_scope, _name_generated_weights
from .node_classifier import ACTIVATIONS, DATA_INPUT_ONLY_FIRST, SHAPE_SOURCES, _attach_bias_adds, _classify
from ..patterns import fold_decomposed_ops
from .proto_fields import _attrs, _text
from .quantized import QUANTIZED_OPS, WEIGHT_INPUTS, classify_quantized, dequantized, rescaling_scales
from .scan import ScanError, read_structure


def load_onnx(path: str | os.PathLike) -> ModelGraph:
    model_path = Path(path)
    target = str(path)
    try:
        if not model_path.exists():
            raise InitlintError(target, "no such file")
        if not model_path.is_file():
            raise InitlintError(target, "not a regular file")
        if model_path.stat().st_size == 0:
            raise InitlintError(target, "empty file, not an ONNX model")
    except OSError as exc:
        raise InitlintError(target, f"cannot be read ({exc.strerror or exc})") from None
    file, raw_spans, constant_spans = None, None, None
    try:
        # Structure only: the weights' bytes stay in the file, viewed in place.
        structure = read_structure(model_path)
        model, file, raw_spans, constant_spans = structure.model, structure.file, structure.raw_spans, structure.constant_spans
    except ScanError as exc:
        if exc.malformed:  # protobuf would refuse it too: no need to read it all into memory
            raise InitlintError(target, f"not a readable ONNX model (malformed protobuf: {exc})", "is the file truncated, or not ONNX?") from None
        model = None  # valid protobuf this reader does not walk: let onnx.load judge the file
    except OSError as exc:
        raise InitlintError(target, f"cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:
        raise InitlintError(target, f"not a readable ONNX model ({_first_line(exc)})") from None
    if model is None:
        try:
            model = onnx.load(str(model_path), load_external_data=False)
        except Exception as exc:
            raise InitlintError(target, f"not a readable ONNX model ({_first_line(exc)})") from None
    if not model.HasField("graph") or (len(model.graph.node) == 0 and len(model.graph.initializer) == 0):
        raise InitlintError(target, "not an ONNX model: the file parses but holds no graph (truncated or not ONNX?)")
    return build_graph(model, model_path, _Source(model_path, file, raw_spans, constant_spans))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else 'parse error'}"


# A sparse initializer is expanded to its dense form when a rule reads it; past this many
# elements (1 GiB of float32) it is left unread, with a note.
MAX_SPARSE_DENSE_ELEMENTS = 2**28


def _sparse_tensor(sparse, source: _Source) -> Tensor | None:
    """A lazy dense Tensor for a SparseTensorProto: zeros with its values at its indices (linear,
    [NNZ], or one row of coordinates per value, [NNZ, rank]), every size checked before use."""
    dims = tuple(int(d) for d in sparse.dims)
    name = _text(sparse.values.name)
    values = _tensor_from_proto(sparse.values, source, name=name)
    indices = _tensor_from_proto(sparse.indices, source, name=f"{name} (indices)")
    if values is None or indices is None or any(d < 0 for d in dims) or math.prod(dims) > MAX_SPARSE_DENSE_ELEMENTS:
        return None
    size = math.prod(dims)
    count = values.size
    if values.ndim != 1 or not indices.dtype.startswith("int") or indices.shape not in ((count,), (count, len(dims))):
        raise source.error(f"sparse initializer {name!r}: {count} values do not match indices of shape {indices.shape} for dims {dims}")

    def read() -> np.ndarray:
        where = np.asarray(indices.values(), dtype=np.int64)
        if where.ndim == 2:
            if where.size and ((where < 0).any() or (where >= np.asarray(dims)).any()):
                raise source.error(f"sparse initializer {name!r} has an index outside its dims {dims}")
            where = np.ravel_multi_index(where.T, dims) if where.size else where.reshape(-1)
        elif where.size and (where.min() < 0 or where.max() >= size):
            raise source.error(f"sparse initializer {name!r} has an index outside its {size:,} elements")
        data = np.asarray(values.values())
        dense = np.zeros(size, dtype=data.dtype)
        dense[where] = data
        return dense

    return Tensor(name, dims, values.dtype, read)


def build_graph(model: onnx.ModelProto, model_path: Path, source: _Source | None = None) -> ModelGraph:
    target = str(model_path)
    source = source or _Source(Path(model_path))
    onnx_graph = model.graph
    graph = ModelGraph(target=target, format="onnx")
    graph.metadata = {
        "ir_version": int(model.ir_version),
        "opsets": {(_text(op.domain) or "ai.onnx"): int(op.version) for op in model.opset_import},
        "producer": f"{_text(model.producer_name)} {_text(model.producer_version)}".strip(),
    }
    consts = _Consts()
    for index, init in enumerate(onnx_graph.initializer):
        span = source.raw_spans[index] if index < len(source.raw_spans) else None
        tensor = _tensor_from_proto(init, source, raw_span=span)
        if tensor is None:
            continue
        consts.add(tensor.name, tensor, init.data_type in FLOAT_TYPES)
        graph.tensors[tensor.name] = tensor
    unread = []
    for sparse in onnx_graph.sparse_initializer:
        tensor = _sparse_tensor(sparse, source)
        if tensor is None:
            unread.append(_text(sparse.values.name))
            continue
        consts.add(tensor.name, tensor, sparse.values.data_type in FLOAT_TYPES)
        graph.tensors[tensor.name] = tensor
    if unread:
        graph.notes.append(
            f"{len(unread)} sparse initializer(s) not read (too large to expand, or of a type no rule reads), so not checked: {', '.join(unread[:5])}"
            + (" ..." if len(unread) > 5 else "")
        )
    initializer_names = set(consts.values)
    for inp in onnx_graph.input:
        if _text(inp.name) in initializer_names:
            continue
        ttype = inp.type.tensor_type
        dims = tuple((d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None) for d in ttype.shape.dim)
        elem = ttype.elem_type
        dtype = np.dtype(_RAW_DTYPES[elem]).name if elem in _RAW_DTYPES and elem != TensorProto.BFLOAT16 else "float32"
        graph.inputs[_text(inp.name)] = (dims, dtype)

    walker = _Walker(graph, consts, source, {(_text(f.domain), _text(f.name)): f for f in model.functions})
    walker.walk(onnx_graph.node, top_level=True)
    producer = walker.producer
    graph.metadata["onnx_layer_of_node"] = walker.top_level_layers  # the probe names nodes the same way
    graph.metadata["onnx_layer_of_output"] = walker.layer_of_output  # and finds inlined If branches' nodes

    for out in onnx_graph.output:
        out_name = _text(out.name)
        if out_name in producer and f"output:{out_name}" not in graph.layers:
            graph.add(Layer(name=f"output:{out_name}", kind=g.OUTPUT, op="output", inputs=[producer[out_name]]))
    _attach_bias_adds(graph)
    _name_generated_weights(graph)
    fold_decomposed_ops(graph)  # SiLU/GELU/Mish/RMSNorm written as elementwise subgraphs
    if walker.subgraphs:
        graph.notes.append(
            f"weights inside {walker.subgraphs} control-flow subgraph(s) and local functions were read; "
            "the signal follows each If's first branch and one Loop/Scan iteration"
        )
    if walker.unread_quantized:
        graph.notes.append(
            f"{len(walker.unread_quantized)} quantized weight(s) such as {walker.unread_quantized[0]} have a scale computed at run time "
            "and were not read as reals"
        )
    if source.skipped_types:
        graph.notes.append(f"tensors of element types {', '.join(sorted(source.skipped_types))} are not inspected")
    return graph


def _claimed(layer: Layer, tensor: Tensor) -> bool:
    return any(t is tensor for t in layer.params.values())


CONTROL_FLOW = {"If", "Loop", "Scan"}


class _Walker:
    """Nodes -> layers, in order. Subgraphs of If/Loop/Scan and calls of the model's local
    functions are walked in place: their weights are read and their layers joined to the values
    around them (a function's body under the call's name, so two calls do not collide)."""

    def __init__(self, graph: ModelGraph, consts: _Consts, source: _Source, functions: dict):
        self.graph, self.consts, self.source, self.functions = graph, consts, source, functions
        self.producer: dict[str, str] = {}  # value name -> layer name
        self.shape_only: set[str] = set()  # values computed only from shapes and constants
        self.used_names: set[str] = set()
        self.requantized: set[str] = set()  # QuantizeLinear of a float constant: still that constant
        self.rescaling: dict[str, str] = {}  # the Cast and Mul after a MatMulInteger: its own output
        self.top_level_layers: dict[int, str] = {}  # index of a top-level node -> its layer
        self.layer_of_output: dict[str, str] = {}  # first output of any node (subgraphs too) -> its layer
        self.subgraphs = 0
        self.unread_quantized: list[str] = []
        self.depth = 0

    def walk(self, nodes, rename=None, tag: str = "", top_level: bool = False, prefix: str = "") -> None:
        rename = rename or (lambda value: value)
        scales, self_links = rescaling_scales(nodes, self.consts, rename)
        self.rescaling.update(self_links)
        for index, node in enumerate(nodes):
            name = self.node(node, rename, scales, f"{tag}{index}", prefix)
            if top_level and name is not None:
                self.top_level_layers[index] = name

    def node(self, node, rename, scales: dict[str, str], index, prefix: str = "") -> str | None:
        graph, consts = self.graph, self.consts
        op = _text(node.op_type)
        attrs = _attrs(node)
        inputs = [rename(_text(name)) if name else "" for name in node.input]
        outputs = [rename(_text(name)) for name in node.output if name]

        # Constants and aliases of constants are values, not layers.
        if op == "Constant":
            # A top-level Constant's bytes stay in the file, viewed in place (initlint.loaders.onnx.scan).
            span = self.source.constant_spans.get(int(index)) if not prefix and str(index).isdigit() else None
            tensor = _constant_node_tensor(node, attrs, self.source, raw_span=span)
            if tensor is not None and outputs:
                consts.add(outputs[0], tensor, tensor.dtype in ("float32", "float64", "float16", "bfloat16"))
                return None
        if op in ("Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten") and inputs and consts.get(inputs[0]) is not None and outputs:
            aliased = _alias_constant(op, attrs, consts, inputs, outputs[0])
            if aliased is not None:
                consts.add(outputs[0], aliased, consts.is_float.get(inputs[0], False) if op != "Cast" else _cast_is_float(attrs))
                if aliased.ndim >= 1 and consts.is_float.get(outputs[0]):
                    graph.tensors.setdefault(aliased.name, aliased)
                return None
        if op == "ConstantOfShape" and inputs and consts.get(inputs[0]) is not None and outputs:
            filled = _constant_of_shape(node, attrs, consts.get(inputs[0]), outputs[0], self.source)
            if filled is not None:
                consts.add(outputs[0], filled, filled.dtype.startswith(("float", "bfloat")))
                graph.tensors.setdefault(outputs[0], filled)
                return None
        if op in ("QuantizeLinear", "DequantizeLinear") and inputs and consts.get(inputs[0]) is not None and outputs:
            if self._constant_quantization(op, attrs, inputs, outputs[0]):
                return None
        if outputs and outputs[0] in self.rescaling and self.rescaling[outputs[0]] in self.producer:
            self.producer[outputs[0]] = self.producer[self.rescaling[outputs[0]]]
            return None
        if op in CONTROL_FLOW or (_text(node.domain), op) in self.functions:
            return self._inline(node, op, inputs, outputs, index, rename, prefix)
        data_inputs = [name for name in inputs if name]
        if op in SHAPE_SOURCES or (data_inputs and all(name in self.shape_only or consts.get(name) is not None for name in data_inputs) and op not in ACTIVATIONS):
            # Shape arithmetic: no data flows through it.
            self.shape_only.update(outputs)
            return None

        name = prefix + (_text(node.name) or f"{op}_{index}")  # a function's body: under the call's name
        if name.startswith("output:"):  # reserved for the graph's output markers
            name = f"{op}_{index}_{name}"
        while name in self.used_names:
            name = f"{name}_{index}"
        self.used_names.add(name)
        layer = Layer(name=name, kind=g.OTHER, op=op, attrs={})
        if op in WEIGHT_INPUTS:
            layer.attrs.update({k: v for k, v in attrs.items() if isinstance(v, (int, float, str, list, tuple))})
            classify_quantized(layer, op, inputs, consts, scales)
            if "unread_quantized_weight" in layer.attrs:
                self.unread_quantized.append(layer.attrs["unread_quantized_weight"])
            for tensor in layer.params.values():  # the reals replace the stored integers
                graph.tensors[tensor.name] = tensor
        elif op in QUANTIZED_OPS:
            layer.kind = g.PASSTHROUGH  # an activation (de)quantized on its way: values pass
        else:
            _classify(layer, node, attrs, inputs, consts, graph)
        if layer.is_weighted:
            scope = _module_scope(node)
            if scope:
                layer.attrs["module_scope"] = scope

        first_only = op in DATA_INPUT_ONLY_FIRST or op in QUANTIZED_OPS
        data_positions = range(len(inputs)) if not first_only else range(min(1, len(inputs)))
        for position in data_positions:
            value = inputs[position]
            if not value or value in self.shape_only:
                continue
            if value in self.producer:
                layer.inputs.append(self.producer[value])
            elif consts.get(value) is not None and position not in layer.const_inputs and not _claimed(layer, consts.get(value)):
                layer.const_inputs[position] = consts.get(value)
        graph.add(layer)
        if outputs:
            self.layer_of_output.setdefault(outputs[0], name)
        if op == "DynamicQuantizeLinear":  # (y, y_scale, y_zero_point): only y carries the data
            self.shape_only.update(outputs[1:])
            outputs = outputs[:1]
        for value in outputs:
            self.producer[value] = name
        return name

    def _constant_quantization(self, op: str, attrs: dict, inputs: list[str], out: str) -> bool:
        """QuantizeLinear/DequantizeLinear of a constant: the weight as reals (QDQ models)."""
        consts, source = self.consts, inputs[0]
        if op == "QuantizeLinear":
            if not consts.is_float.get(source):
                return False
            consts.add(out, consts.get(source), True)  # quantized and back: still this weight
            self.requantized.add(out)
            return True
        if source in self.requantized:
            consts.add(out, consts.get(source), True)
            return True
        scale = consts.get(inputs[1]) if len(inputs) > 1 and inputs[1] else None
        zero = consts.get(inputs[2]) if len(inputs) > 2 and inputs[2] else None
        stored = consts.get(source)
        if scale is None or consts.is_float.get(source):
            return False
        real = dequantized(stored, scale, zero, int(attrs.get("axis", 1)) if isinstance(attrs.get("axis", 1), int) else 1)
        if real is None:
            return False
        consts.add(out, real, True)
        if stored.name in self.graph.tensors:
            self.graph.tensors[stored.name] = real  # the reals replace the stored integers
        return True

    def _inline(self, node, op: str, inputs: list[str], outputs: list[str], index, rename, prefix: str = "") -> str | None:
        """An If/Loop/Scan or a local function call: its body's layers, joined to the values around it."""
        if self.depth > 64:
            raise InitlintError(self.graph.target, "control-flow subgraphs are nested more than 64 deep; refused")
        self.depth += 1
        self.subgraphs += 1
        call = prefix + (_text(node.name) or f"{op}_{index}")
        try:
            if op in CONTROL_FLOW:
                branch_outputs = self._control_flow(node, op, inputs, call, rename, prefix)
            else:
                branch_outputs = [self._function(node, inputs, outputs, call)]
        finally:
            self.depth -= 1
        # Each output of the node: what its branch (or body) computed there. Several branches
        # (If): a merge point whose signal follows the first branch that computes data.
        name = None
        for position, value in enumerate(outputs):
            sources = [branch[position] for branch in branch_outputs if position < len(branch)]
            if all(s is None or s in self.shape_only or self.consts.get(s) is not None for s in sources):
                self.shape_only.add(value)
                continue
            producers = list(dict.fromkeys(self.producer[s] for s in sources if s in self.producer))
            if len(branch_outputs) == 1 and len(producers) == 1:
                self.producer[value] = producers[0]  # a function or loop body: its own layers
                continue
            if name is None:
                name = call
                while name in self.used_names:
                    name = f"{name}_{index}"
                self.used_names.add(name)
                self.graph.add(Layer(name=name, kind=g.PASSTHROUGH, op=op, inputs=producers))
            self.producer[value] = name
        return name

    def _subgraph_initializers(self, subgraph, rename) -> None:
        for init in subgraph.initializer:
            tensor = _tensor_from_proto(init, self.source)
            if tensor is None:
                continue
            self.consts.add(rename(tensor.name), tensor, init.data_type in FLOAT_TYPES)
            self.graph.tensors.setdefault(tensor.name, tensor)

    def _control_flow(self, node, op: str, inputs: list[str], call: str, rename, prefix: str) -> list[list[str | None]]:
        results = []
        for attr in node.attribute:
            if attr.type != onnx.AttributeProto.GRAPH:
                continue
            body = attr.g
            self._subgraph_initializers(body, rename)
            formals = [rename(_text(v.name)) for v in body.input]
            if op == "Loop":  # (iteration, condition, carried...) <- (M, cond, carried...)
                bound = dict(zip(formals[2:], inputs[2:]))
                self.shape_only.update(formals[:2])
            elif op == "Scan":  # states and scanned slices, one to one
                bound = dict(zip(formals, inputs))
            else:
                bound = {}
            for formal, outer in bound.items():
                self._bind(formal, outer)
            self.walk(body.node, rename, tag=f"{call}.{_text(attr.name)}.", prefix=prefix)
            returned = [rename(_text(v.name)) for v in body.output]
            results.append(returned[1:] if op == "Loop" else returned)  # a Loop body returns its condition first
        return results

    def _function(self, node, inputs: list[str], outputs: list[str], call: str) -> list[str | None]:
        function = self.functions[(_text(node.domain), _text(node.op_type))]
        formals_in = [_text(v) for v in function.input]
        formals_out = [_text(v) for v in function.output]
        local = {formal: outer for formal, outer in zip(formals_in, inputs)}

        def rename(value: str) -> str:
            return local.get(value, f"{call}/{value}") if value else value

        self.walk(function.node, rename, tag="", prefix=f"{call}/")
        return [rename(v) for v in formals_out]

    def _bind(self, formal: str, outer: str) -> None:
        """A subgraph's formal input takes the value the node was given."""
        if not outer or outer in self.shape_only:
            self.shape_only.add(formal)
        elif self.consts.get(outer) is not None:
            self.consts.add(formal, self.consts.get(outer), self.consts.is_float.get(outer, False))
        elif outer in self.producer:
            self.producer[formal] = self.producer[outer]
