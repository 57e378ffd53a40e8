"""Torch tensors as lazy graph Tensors, and the tensors nested in containers."""

from __future__ import annotations

from ...graph import Layer, ModelGraph, Tensor


def as_numpy(value):
    """A torch tensor's values as numpy: detached, on the CPU, fp16/bf16 as float32."""
    data = value.detach()
    if data.device.type != "cpu":
        data = data.cpu()
    if data.dtype.is_floating_point and data.element_size() < 4:
        data = data.float()
    return data.numpy()


def tensor_of(name: str, value) -> Tensor:
    """A lazy view of a torch tensor (read through as_numpy)."""
    return Tensor(name, tuple(value.shape), str(value.dtype).replace("torch.", ""), lambda value=value: as_numpy(value))


def _flatten_tensors(torch, obj, prefix: str):
    if isinstance(obj, torch.Tensor):
        yield prefix or "tensor", obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _flatten_tensors(torch, value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _flatten_tensors(torch, value, f"{prefix}.{index}" if prefix else str(index))


def _share_tensors(graph: ModelGraph, layer: Layer) -> None:
    """Use the graph's Tensor objects so that statistics are computed once per parameter."""
    for role, tensor in list(layer.params.items()):
        layer.params[role] = graph.tensors.get(tensor.name, tensor)
