"""Reading ONNX protobuf fields safely: text that may not be UTF-8, node attributes."""

from __future__ import annotations

import onnx


def _text(value) -> str:
    """A protobuf string field: protobuf hands back bytes when the file's text is not UTF-8."""
    return value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH or attr.type == onnx.AttributeProto.GRAPHS:
            continue
        try:
            out[_text(attr.name)] = onnx.helper.get_attribute_value(attr)
        except Exception:
            continue
    return out
