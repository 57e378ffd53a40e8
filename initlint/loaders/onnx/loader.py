"""Read an ONNX model into a ModelGraph without importing torch: the file checks and the node walk."""

from __future__ import annotations

import os
from pathlib import Path

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
    file, raw_spans = None, None
    try:
        # Structure only: the weights' bytes stay in the file, viewed in place.
        structure = read_structure(model_path)
        model, file, raw_spans = structure.model, structure.file, structure.raw_spans
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
    return build_graph(model, model_path, _Source(model_path, file, raw_spans))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else 'parse error'}"


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
    if len(onnx_graph.sparse_initializer):
        names = [_text(t.values.name) for t in onnx_graph.sparse_initializer]
        graph.notes.append(
            f"{len(names)} sparse initializer(s) not read, so not checked and their layers seen without weights: {', '.join(names[:5])}"
            + (" ..." if len(names) > 5 else "")
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

    producer: dict[str, str] = {}  # value name -> layer name
    shape_only: set[str] = set()  # values computed only from shapes and constants
    used_names: set[str] = set()

    for index, node in enumerate(onnx_graph.node):
        op = _text(node.op_type)
        attrs = _attrs(node)
        inputs = [_text(name) for name in node.input]
        outputs = [_text(name) for name in node.output if name]

        # Constants and aliases of constants are values, not layers.
        if op == "Constant":
            tensor = _constant_node_tensor(node, attrs, source)
            if tensor is not None and outputs:
                consts.add(outputs[0], tensor, tensor.dtype in ("float32", "float64", "float16", "bfloat16"))
                continue
        if op in ("Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten") and inputs and consts.get(inputs[0]) is not None and outputs:
            aliased = _alias_constant(op, attrs, consts, inputs, outputs[0])
            if aliased is not None:
                consts.add(outputs[0], aliased, consts.is_float.get(inputs[0], False) if op != "Cast" else _cast_is_float(attrs))
                if aliased.ndim >= 1 and consts.is_float.get(outputs[0]):
                    graph.tensors.setdefault(aliased.name, aliased)
                continue
        if op == "ConstantOfShape" and inputs and consts.get(inputs[0]) is not None and outputs:
            filled = _constant_of_shape(node, attrs, consts.get(inputs[0]), outputs[0], source)
            if filled is not None:
                consts.add(outputs[0], filled, filled.dtype.startswith(("float", "bfloat")))
                graph.tensors.setdefault(outputs[0], filled)
                continue
        data_inputs = [name for name in inputs if name]
        if op in SHAPE_SOURCES or (data_inputs and all(name in shape_only or consts.get(name) is not None for name in data_inputs) and op not in ACTIVATIONS):
            # Shape arithmetic: no data flows through it.
            shape_only.update(outputs)
            continue

        name = _text(node.name) or f"{op}_{index}"
        if name.startswith("output:"):  # reserved for the graph's output markers
            name = f"{op}_{index}_{name}"
        while name in used_names:
            name = f"{name}_{index}"
        used_names.add(name)
        layer = Layer(name=name, kind=g.OTHER, op=op, attrs={})
        _classify(layer, node, attrs, inputs, consts, graph)
        if layer.is_weighted:
            scope = _module_scope(node)
            if scope:
                layer.attrs["module_scope"] = scope

        data_positions = range(len(inputs)) if op not in DATA_INPUT_ONLY_FIRST else range(min(1, len(inputs)))
        for position in data_positions:
            value = inputs[position]
            if not value or value in shape_only:
                continue
            if value in producer:
                layer.inputs.append(producer[value])
            elif consts.get(value) is not None and position not in layer.const_inputs and not _claimed(layer, consts.get(value)):
                layer.const_inputs[position] = consts.get(value)
        graph.add(layer)
        for value in outputs:
            producer[value] = name

    for out in onnx_graph.output:
        out_name = _text(out.name)
        if out_name in producer and f"output:{out_name}" not in graph.layers:
            graph.add(Layer(name=f"output:{out_name}", kind=g.OUTPUT, op="output", inputs=[producer[out_name]]))
    _attach_bias_adds(graph)
    _name_generated_weights(graph)
    fold_decomposed_ops(graph)  # SiLU/GELU/Mish/RMSNorm written as elementwise subgraphs
    if any(_text(node.op_type) in ("If", "Loop", "Scan") for node in onnx_graph.node):
        graph.notes.append("control-flow subgraphs (If/Loop/Scan) are not inspected")
    if source.skipped_types:
        graph.notes.append(f"tensors of element types {', '.join(sorted(source.skipped_types))} are not inspected")
    return graph


def _claimed(layer: Layer, tensor: Tensor) -> bool:
    return any(t is tensor for t in layer.params.values())
