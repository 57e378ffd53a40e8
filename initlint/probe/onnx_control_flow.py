"""ONNX control flow the probe can resolve before it runs a model: an ``If`` whose condition is
fixed by the probe's inputs (their shapes, or a selector such as a sample rate) is replaced by
the branch it takes, so the branch's layers become top-level nodes that onnx2torch can convert
and onnxruntime can expose as outputs. Works on the probe's in-memory copy of the model only.
"""

from __future__ import annotations

import numpy as np

# Rounds of resolving: an inlined branch may bring nested Ifs to the top level.
MAX_ROUNDS = 16
# Ops a selector input passes through unchanged on its way to the comparison that uses it.
_SELECTOR_PATH = {"Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Gather", "Flatten"}


def constant_values(proto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs of the top-level graph, as arrays."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    for node in proto.graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None and node.output:
            values[node.output[0]] = numpy_helper.to_array(value.t)
    return values


def selector_values(proto) -> dict[str, int]:
    """Integer scalar inputs that the graph compares with a constant (a sample rate, a mode
    flag): the first constant each is compared with. A random integer would take neither branch."""
    from onnx import TensorProto

    constants = constant_values(proto)
    initializers = {init.name for init in proto.graph.initializer}
    consumers: dict[str, list] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = {}
    integer = (TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8)
    for inp in proto.graph.input:
        ttype = inp.type.tensor_type
        if inp.name in initializers or ttype.elem_type not in integer or len(ttype.shape.dim) > 1:
            continue
        frontier, seen = [inp.name], set()
        while frontier and inp.name not in found:
            value = frontier.pop(0)
            if value in seen:
                continue
            seen.add(value)
            for node in consumers.get(value, ()):
                if node.op_type == "Equal":
                    other = next((v for v in node.input if v != value and v in constants), None)
                    if other is not None and constants[other].size == 1:
                        found[inp.name] = int(constants[other].reshape(-1)[0])
                        break
                elif node.op_type in _SELECTOR_PATH and node.input[0] == value:
                    frontier.extend(node.output)
    return found


def inline_static_ifs(proto, feeds: dict[str, np.ndarray], evaluate) -> int:
    """Replace every top-level ``If`` whose condition ``evaluate(proto, names, feeds)`` computes
    by the nodes of the branch it takes; returns how many were replaced. ``evaluate`` returns
    {name: array} for the names it could compute."""
    replaced = 0
    for _ in range(MAX_ROUNDS):
        ifs = [node for node in proto.graph.node if node.op_type == "If"]
        if not ifs:
            break
        try:
            conditions = evaluate(_pruned_to(proto, [node.input[0] for node in ifs]), [node.input[0] for node in ifs], feeds)
        except Exception:
            break
        rebuilt, changed = [], 0
        for node in proto.graph.node:
            condition = conditions.get(node.input[0]) if node.op_type == "If" else None
            if condition is None or np.asarray(condition).size != 1:
                rebuilt.append(node)
                continue
            rebuilt.extend(_branch_nodes(proto, node, bool(np.asarray(condition).reshape(-1)[0])))
            changed += 1
        if not changed:
            break
        replaced += changed
        del proto.graph.node[:]
        proto.graph.node.extend(rebuilt)
        prune_unused(proto)
    return replaced


def _branch_nodes(proto, node, condition: bool) -> list:
    """The taken branch's nodes, its initializers moved to the graph, and an Identity from each
    branch output to the If's output of the same position."""
    from onnx import helper

    branch = next(a.g for a in node.attribute if a.name == ("then_branch" if condition else "else_branch"))
    proto.graph.initializer.extend(branch.initializer)
    nodes = list(branch.node)
    for position, (inner, outer) in enumerate(zip(branch.output, node.output)):
        if outer:
            nodes.append(helper.make_node("Identity", [inner.name], [outer], name=f"{node.name or 'If'}_out{position}"))
    return nodes


def _names_used(node) -> set[str]:
    """A node's inputs, and the outer values its subgraphs read."""
    used = {name for name in node.input if name}
    for attr in node.attribute:
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            local = {i.name for i in sub.input} | {i.name for i in sub.initializer}
            for inner in sub.node:
                local.update(inner.output)
            for inner in sub.node:
                used |= _names_used(inner) - local
            used |= {o.name for o in sub.output} - local
    return used


def prune_unused(proto) -> None:
    """Drop nodes none of whose outputs is used (the comparisons that chose a branch)."""
    outputs = {o.name for o in proto.graph.output}
    while True:
        used = set(outputs)
        for node in proto.graph.node:
            used |= _names_used(node)
        kept = [node for node in proto.graph.node if any(o in used for o in node.output if o)]
        if len(kept) == len(proto.graph.node):
            return
        del proto.graph.node[:]
        proto.graph.node.extend(kept)


def _pruned_to(proto, names: list[str]):
    """A copy of the model that computes only the conditions ``names`` (declared as its outputs)."""
    from onnx import ModelProto, TensorProto, helper

    copy = ModelProto()
    copy.CopyFrom(proto)
    del copy.graph.output[:]
    for name in dict.fromkeys(names):  # an If's condition is a bool
        copy.graph.output.append(helper.make_tensor_value_info(name, TensorProto.BOOL, None))
    prune_unused(copy)
    return copy
