"""Forward-only measurement through onnxruntime, for ONNX models the probe cannot run in torch
(no converter for an op, a conversion or a run that fails).

On an in-memory copy of the model (the user's file is never written): Ifs whose branch the
inputs decide are inlined, BatchNormalization runs on batch statistics as in training
(docs/science.md §10), and every watched layer's output, the value it reads and the activation
after it become graph outputs. Seeded synthetic inputs go through onnxruntime on the CPU and the per-layer
forward statistics are computed as the torch probe computes them (initlint.probe.statistics).
No gradient exists here: the backward quantities stay unmeasured and the verdicts on them say
why (``ProbeMeasurement.forward_only``). onnxruntime is imported only when this runs.
"""

from __future__ import annotations

import contextlib
import io
import math
from types import SimpleNamespace

import numpy as np

from ..graph import ModelGraph
from ..measurement import ProbeMeasurement
from .measure import MAX_SEEDS, _assemble, _wants_more, _watch_list, first_tensor, standard_loss
from .inputs import DEFAULT_SEQUENCE, SAMPLE_ELEMENTS_BUDGET, SPATIAL_ELEMENTS_BUDGET, ProbeUnavailable, batch_for, check_declared_input
from .model import _restore_folded_norms
from .onnx_control_flow import inline_static_ifs, prune_unused, selector_values
from .statistics import channel_variance, duplicate_fraction, inactive_fraction, output_stats

# The probe shares the machine with the user's work: few threads.
THREADS = 2
# Sizes tried, in order, for the dimensions the model leaves open beyond the batch (the same size
# for all of them): small first; conv nets that downsample 32 times need a multiple of 32, audio
# front ends a window of a few hundred samples.
CANDIDATE_SIZES = (32, 64, 48, 16, 96, 128, 256, 320, 512, 576, 1024)
TRIAL_BATCH = 2


def forward_only(graph: ModelGraph, why: str, input_shapes, input_dtype, seed: int, budget, predictions=()) -> ProbeMeasurement:
    """Measure the forward signal through onnxruntime; ``why``: why torch could not run the model."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ProbeUnavailable(f"{why}; a forward-only measurement needs onnxruntime (pip install 'initlint[probe]')") from None
    import onnx
    import torch

    reason = f"forward-only through onnxruntime: {why}"
    try:
        proto = onnx.load(graph.target)
    except Exception as exc:
        raise ProbeUnavailable(f"{why}; the ONNX file could not be loaded with its weights ({type(exc).__name__}: {exc})") from None
    layer_of_output = dict(graph.metadata.get("onnx_layer_of_output") or {})
    for index, name in (graph.metadata.get("onnx_layer_of_node") or {}).items():
        if int(index) < len(proto.graph.node) and proto.graph.node[int(index)].output:
            layer_of_output[proto.graph.node[int(index)].output[0]] = name
    notes = []
    layer_of_node = {}
    for index, node in enumerate(proto.graph.node):
        layer_of_node[index] = layer_of_output.get(node.output[0]) if node.output else None
        node.name = f"n{index}"
    layer_of_node = {k: v for k, v in layer_of_node.items() if v}
    restored = _restore_folded_norms(proto, graph, layer_of_node)
    if restored:
        notes.append(f"the probe put back {restored} BatchNorm layers that the eval-mode export folded into convolutions")

    specs = _input_specs(proto, graph, dict(input_shapes or {}), input_dtype)
    budget.check("choosing the input sizes")
    feeds0 = _feeds(specs, seed)
    inlined = inline_static_ifs(proto, feeds0, evaluate)
    if inlined:
        notes.append(f"{inlined} If node(s) ran as the branch these inputs take")
    normalized = _batch_statistics_norms(proto)
    if normalized:
        notes.append(f"{normalized} BatchNormalization node(s) ran on batch statistics, as in training")

    runnable = SimpleNamespace(layer_modules={}, input_shapes={name: list(shape) for name, shape, _, _ in specs})
    layer_inputs = {}  # a watched layer's output value -> the computed value it reads
    constant = {init.name for init in proto.graph.initializer}
    for node in proto.graph.node:
        name = layer_of_output.get(node.output[0]) if node.output else None
        if name in graph.layers and name not in runnable.layer_modules:
            runnable.layer_modules[name] = node.output[0]
            layer_inputs[node.output[0]] = next((v for v in node.input if v and v not in constant), None)
        if all(v in constant for v in node.input if v):  # a weight computed from weights (Identity, Transpose)
            constant.update(node.output)
    watched = _watch_list(graph, runnable)
    model_outputs = [o.name for o in proto.graph.output]
    graph_inputs = {name for name, _, _, _ in specs}
    exposed = _expose(proto, {v for w in watched for v in (w.module_name, w.dead_module, layer_inputs.get(w.module_name)) if v and v not in graph_inputs})
    watched = [w for w in watched if w.module_name in exposed]
    if not watched:
        raise ProbeUnavailable(f"{why}; onnxruntime could not expose any weighted layer's output")
    biases = _own_biases(proto)
    session = _session(proto)

    per_seed, losses, loss_name, seeds, shapes = [], [], "", [], []
    for i in range(MAX_SEEDS):
        if i > 0:
            partial = _assemble(graph, watched, per_seed, seeds, losses, loss_name, shapes, runnable)
            if not _wants_more(partial, predictions) or budget.elapsed * (i + 1) / i > budget.seconds:
                break
        budget.check(f"forward pass {i + 1} through onnxruntime")
        names = model_outputs + [v for v in exposed if v not in model_outputs]
        feeds = _feeds(specs, seed + i)
        values = {**feeds, **dict(zip(names, session.run(names, feeds)))}
        rows = {}
        for w in watched:
            out = torch.from_numpy(np.asarray(values[w.module_name])).float()
            bias = biases.get(w.module_name)
            owner = SimpleNamespace(bias=torch.tensor(bias, dtype=torch.float32) if bias is not None else None)
            row = output_stats(torch, out, owner, w.unit_axis, w.dead_from_output)
            if w.saturation_at is not None:
                row["saturated_fraction"] = float((out.abs() > w.saturation_at).float().mean())
            row["non_finite_fraction"] = float((~torch.isfinite(out)).float().mean())
            layer_input = values.get(layer_inputs.get(w.module_name))
            if isinstance(layer_input, np.ndarray) and np.issubdtype(layer_input.dtype, np.floating):
                row["layer_input_variance"] = channel_variance(torch.from_numpy(layer_input).float(), w.unit_axis)
            if w.dead_module in values:
                row.update(inactive_fraction(torch, torch.from_numpy(np.asarray(values[w.dead_module])).float(), w.unit_axis))
            if any(p.quantity.value == "duplicate_unit_fraction" and p.to_layer == w.layer.name for p in predictions):
                row["duplicate_fraction"] = duplicate_fraction(torch, out, w.unit_axis)
            rows[w.layer.name] = row
        output = tuple(torch.from_numpy(np.asarray(values[name])) for name in model_outputs if isinstance(values[name], np.ndarray))
        loss, loss_name = standard_loss(output, seed + i)
        logits = first_tensor(output)
        losses.append(float(loss))
        shapes.append({"classes": int(logits.shape[1]) if logits is not None and logits.ndim == 2 else None,
                       "output_std": float(logits.float().std()) if logits is not None and logits.numel() > 1 else None})
        per_seed.append(rows)
        seeds.append(seed + i)
    result = _assemble(graph, watched, per_seed, seeds, losses, loss_name, shapes, runnable)
    result.forward_only = reason
    result.notes = [reason + " (backward and frozen-parameter claims stay unmeasured)"] + notes
    return result


# --- onnxruntime ---------------------------------------------------------------------------------


def _session(proto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # the size trials fail by design: no error lines on stderr
    # onnxruntime prints a session that fails to build ("EP Error") to stdout: not in our report.
    with contextlib.redirect_stdout(io.StringIO()):
        return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def evaluate(proto, names: list[str], feeds: dict) -> dict:
    """Compute ``names`` (outputs of ``proto``) on ``feeds``."""
    session = _session(proto)
    wanted = {i.name for i in session.get_inputs()}
    return dict(zip(names, session.run(names, {k: v for k, v in feeds.items() if k in wanted})))


def _expose(proto, values: set[str]) -> list[str]:
    """Make ``values`` graph outputs where their element type is known and floating point."""
    from onnx import TensorProto, helper, shape_inference

    try:
        inferred = shape_inference.infer_shapes(proto)
        types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    except Exception:
        types = {}
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    present = {o.name for o in proto.graph.output}
    exposed = []
    for name in sorted(values):
        if name in present:
            exposed.append(name)
        elif types.get(name) in floats:
            proto.graph.output.append(helper.make_tensor_value_info(name, types[name], None))
            exposed.append(name)
    return exposed


def _own_biases(proto) -> dict[str, np.ndarray]:
    """The bias a Conv / ConvTranspose / Gemm adds in its own output (its third input)."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in proto.graph.initializer}
    found = {}
    for node in proto.graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(node.input) > 2 and node.input[2] in initializers:
            found[node.output[0]] = numpy_helper.to_array(initializers[node.input[2]]).reshape(-1)
    return found


# --- inputs --------------------------------------------------------------------------------------


def _input_specs(proto, graph: ModelGraph, input_shapes: dict, input_dtype) -> list[tuple]:
    """(name, shape, dtype, fixed value or None) per input: the declared dims, --input-shape where
    given, and for open dims the first candidate size the model accepts (tried on a batch of 2)."""
    selectors = selector_values(proto)
    initializers = {init.name for init in proto.graph.initializer}
    declared = []
    for position, inp in enumerate(i for i in proto.graph.input if i.name not in initializers):
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None) for d in inp.type.tensor_type.shape.dim]
        dtype = graph.inputs.get(inp.name, ((), "float32"))[1]
        if input_dtype and position == 0:
            dtype = input_dtype
        given = input_shapes.get(inp.name) or (input_shapes.get("") if position == 0 else None)
        declared.append((inp.name, dims, dtype, given))
    if not declared:
        raise ProbeUnavailable("the ONNX model has no graph inputs to feed")
    open_dims = any(given is None and any(not isinstance(d, int) for d in dims) for _, dims, _, given in declared)
    tried = []
    for size in CANDIDATE_SIZES if open_dims else (None,):
        trial = _shapes(declared, size, TRIAL_BATCH, selectors)
        for name, shape, _, _ in trial:  # a size the file declares is not allocated past what the probe affords
            check_declared_input(name, shape)
        try:
            evaluate(proto, [proto.graph.output[0].name], _feeds(trial, 0))
        except Exception as exc:
            tried.append((size, " ".join(str(exc).split())[:160]))
            continue
        per_sample = max(math.prod(s[1:]) if len(s) > 1 else 1 for _, s, _, _ in trial)
        budget = SPATIAL_ELEMENTS_BUDGET if max(len(s) for _, s, _, _ in trial) >= 3 else SAMPLE_ELEMENTS_BUDGET
        final = _shapes(declared, size, batch_for(per_sample, budget), selectors)
        if final != trial:
            try:
                evaluate(proto, [proto.graph.output[0].name], _feeds(final, 0))
                return final
            except Exception:
                pass
        return trial
    sizes = ", ".join(str(s) for s, _ in tried)
    raise ProbeUnavailable(f"onnxruntime accepted none of the input sizes tried ({sizes}): {tried[-1][1] if tried else ''}; use --input-shape")


def _shapes(declared, size, batch: int, selectors: dict) -> list[tuple]:
    """Concrete shapes: the first open dim of an input is its batch (a name shared between
    inputs, such as an RNN state's batch, is one dim), the others ``size``."""
    named: dict[str, int] = {}
    specs = []
    for name, dims, dtype, given in declared:
        if given is not None:
            specs.append((name, tuple(given), dtype, selectors.get(name)))
            continue
        shape, batch_taken = [], False
        for d in dims:
            if isinstance(d, int):
                shape.append(d)
                continue
            value = batch if not batch_taken else (size or DEFAULT_SEQUENCE)
            batch_taken = True
            if isinstance(d, str) and d:
                value = named.setdefault(d, value)
            shape.append(value)
        specs.append((name, tuple(shape), dtype, selectors.get(name)))
    return specs


def _feeds(specs, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape, dtype, fixed in specs:
        if fixed is not None:
            feeds[name] = np.full(shape, fixed, dtype=dtype)
        elif dtype.startswith(("int", "uint")):
            feeds[name] = rng.integers(0, 2, shape).astype(dtype)
        elif dtype == "bool":
            feeds[name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


# --- BatchNormalization on batch statistics ---------------------------------------------------------


def _batch_statistics_norms(proto) -> int:
    """Rewrite each BatchNormalization as normalization by the batch's own mean and variance per
    channel (whatever the input's rank: reshaped to [N, C, -1]), then the node's scale and shift."""
    from onnx import helper, numpy_helper

    opset = next((op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")), 1)
    rebuilt, count = [], 0
    constants = []

    def const(name, array):
        constants.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    for node in proto.graph.node:
        if node.op_type != "BatchNormalization" or len(node.input) < 3:
            rebuilt.append(node)
            continue
        p = f"{node.name or 'bn'}_{count}_batchstats"
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        x, scale, bias, y = node.input[0], node.input[1], node.input[2], node.output[0]
        to3, to_c = const(f"{p}.to3", np.array([0, 0, -1], np.int64)), const(f"{p}.to_c", np.array([1, -1, 1], np.int64))
        eps_name = const(f"{p}.eps", np.array(eps, np.float32))
        axes = const(f"{p}.axes", np.array([0, 2], np.int64)) if opset >= 18 else None

        def mean(src, dst, axes=axes):
            if opset >= 18:
                return helper.make_node("ReduceMean", [src, axes], [dst], keepdims=1)
            return helper.make_node("ReduceMean", [src], [dst], axes=[0, 2], keepdims=1)

        rebuilt += [
            helper.make_node("Reshape", [x, to3], [f"{p}.x3"]),
            mean(f"{p}.x3", f"{p}.mean"),
            helper.make_node("Sub", [f"{p}.x3", f"{p}.mean"], [f"{p}.centered"]),
            helper.make_node("Mul", [f"{p}.centered", f"{p}.centered"], [f"{p}.sq"]),
            mean(f"{p}.sq", f"{p}.var"),
            helper.make_node("Add", [f"{p}.var", eps_name], [f"{p}.var_eps"]),
            helper.make_node("Sqrt", [f"{p}.var_eps"], [f"{p}.std"]),
            helper.make_node("Div", [f"{p}.centered", f"{p}.std"], [f"{p}.normed"]),
            helper.make_node("Reshape", [scale, to_c], [f"{p}.scale"]),
            helper.make_node("Reshape", [bias, to_c], [f"{p}.shift"]),
            helper.make_node("Mul", [f"{p}.normed", f"{p}.scale"], [f"{p}.scaled"]),
            helper.make_node("Add", [f"{p}.scaled", f"{p}.shift"], [f"{p}.y3"]),
            helper.make_node("Shape", [x], [f"{p}.shape"]),
            helper.make_node("Reshape", [f"{p}.y3", f"{p}.shape"], [y]),
        ]
        count += 1
    if count:
        del proto.graph.node[:]
        proto.graph.node.extend(rebuilt)
        proto.graph.initializer.extend(constants)
        prune_unused(proto)
    return count
