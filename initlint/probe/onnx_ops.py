"""Converters for ONNX ops that onnx2torch lacks, registered through its public registry
(``onnx2torch.node_converters.add_converter``) so the probe can run the files people have:
CNNs with GlobalMaxPool, and recurrent exports (ONNX LSTM/GRU as torch.nn.LSTM/GRU with the
file's weights, so their gradients are measured like any layer's). scikit-learn's
ArrayFeatureExtractor (the class-label lookup) is rewritten as the standard Gather it is:
onnx2torch cannot name a module of the ai.onnx.ml domain (its dots)."""

from __future__ import annotations

_REGISTERED = False


def register_converters() -> None:
    """Add the converters once per process (onnx2torch refuses a second registration)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    import torch
    from onnx2torch.node_converters import add_converter
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    class GlobalMaxPool(torch.nn.Module):
        def forward(self, x):
            return torch.amax(x, dim=tuple(range(2, x.ndim)), keepdim=True)

    def simple(module_class):
        def convert(node, graph):  # noqa: ARG001
            return OperationConverterResult(torch_module=module_class(), onnx_mapping=onnx_mapping_from_node(node=node))

        return convert

    add_converter(operation_type="GlobalMaxPool", version=1)(simple(GlobalMaxPool))
    for version in (7, 14, 22):
        add_converter(operation_type="LSTM", version=version)(_recurrent(torch, "LSTM", OperationConverterResult))
    for version in (7, 14, 22):
        add_converter(operation_type="GRU", version=version)(_recurrent(torch, "GRU", OperationConverterResult))


def rewrite_ml_ops(proto) -> int:
    """ai.onnx.ml ArrayFeatureExtractor(X, indices) -> Gather(X, indices, axis=-1): the same
    elements (X[..., indices]); returns how many nodes were rewritten."""
    from onnx import helper

    count = 0
    for node in proto.graph.node:
        if node.op_type == "ArrayFeatureExtractor" and node.domain == "ai.onnx.ml":
            node.op_type, node.domain = "Gather", ""
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("axis", -1))
            count += 1
    return count


# ONNX stacks the gates as i, o, f, c (LSTM) and z, r, h (GRU); torch as i, f, g, o and r, z, n.
_GATE_ORDER = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2]}


def _recurrent(torch, kind: str, Result):
    from onnx2torch.utils.common import OnnxMapping

    def convert(node, graph):
        attrs = node.attributes
        hidden = int(attrs["hidden_size"])
        direction = attrs.get("direction", "forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        layout = int(attrs.get("layout", 0))
        inputs = list(node.input_values)
        if direction == "reverse" or any(a in attrs for a in ("activations", "clip")) or (kind == "GRU" and not attrs.get("linear_before_reset", 0)):
            raise NotImplementedError(f"{kind} with direction={direction}, custom activations, clip or linear_before_reset=0")
        if not all(name in graph.initializers for name in inputs[1:3]):
            raise NotImplementedError(f"{kind} whose weights are not initializers")
        w = graph.initializers[inputs[1]].to_torch()
        r = graph.initializers[inputs[2]].to_torch()
        b = graph.initializers[inputs[3]].to_torch() if len(inputs) > 3 and inputs[3] in graph.initializers else None
        directions = w.shape[0]
        module = getattr(torch.nn, kind)(w.shape[-1], hidden, bidirectional=directions == 2, batch_first=False)
        order = _GATE_ORDER[kind]

        def gates(t):
            return torch.cat([t.reshape(len(order), hidden, *t.shape[1:])[i] for i in order])

        with torch.no_grad():
            for d in range(directions):
                suffix = "_reverse" if d == 1 else ""
                getattr(module, f"weight_ih_l0{suffix}").copy_(gates(w[d]))
                getattr(module, f"weight_hh_l0{suffix}").copy_(gates(r[d]))
                if b is not None:
                    getattr(module, f"bias_ih_l0{suffix}").copy_(gates(b[d, : len(order) * hidden]))
                    getattr(module, f"bias_hh_l0{suffix}").copy_(gates(b[d, len(order) * hidden :]))
                else:
                    getattr(module, f"bias_ih_l0{suffix}").zero_()
                    getattr(module, f"bias_hh_l0{suffix}").zero_()
        states = [name for name in inputs[5:] if name]  # initial_h (and initial_c)
        wrapper = _Recurrent(torch, module, kind, layout, directions, hidden, len(states))
        mapping = OnnxMapping(inputs=(inputs[0], *states), outputs=tuple(node.output_values))
        return Result(torch_module=wrapper, onnx_mapping=mapping)

    return convert


def _Recurrent(torch, module, kind, layout, directions, hidden, states):
    class Recurrent(torch.nn.Module):
        """ONNX's LSTM/GRU signature and output layout around a torch one: Y is
        [seq, directions, batch, hidden] (layout 0), Y_h and Y_c [directions, batch, hidden]."""

        def __init__(self):
            super().__init__()
            self.rnn = module

        def forward(self, x, *initial):
            if layout:
                x = x.transpose(0, 1)
            state = None
            if initial:
                state = (initial[0], initial[1]) if kind == "LSTM" and len(initial) > 1 else initial[0]
            y, last = self.rnn(x, state)
            y = y.reshape(y.shape[0], y.shape[1], directions, hidden).permute(0, 2, 1, 3)
            if layout:
                y = y.permute(2, 0, 1, 3)
            if kind == "LSTM":
                h, c = last
                return y, h, c
            return y, last

    return Recurrent()
