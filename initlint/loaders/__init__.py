"""Turn a target (a model file or a ``module:callable`` spec) into a ModelGraph."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InitlintError
from ..graph import ModelGraph

ONNX_SUFFIXES = {".onnx"}
PT2_SUFFIXES = {".pt2"}
TORCH_FILE_SUFFIXES = {".pt", ".pth", ".bin", ".ts", ".jit", ".ptl", ".torchscript"}
SAFETENSORS_SUFFIXES = {".safetensors"}
KERAS_SUFFIXES = {".keras"}
MODEL_SUFFIXES = ONNX_SUFFIXES | PT2_SUFFIXES | TORCH_FILE_SUFFIXES | SAFETENSORS_SUFFIXES | KERAS_SUFFIXES

_SPEC = re.compile(r"^(?P<module>[^:]+\.py|[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_][\w.]*)$")


@dataclass
class LoadOptions:
    # name -> shape; the key "" stands for the only (or first) input.
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    input_dtype: str | None = None
    trust_pickle: bool = False


def is_spec(target: str) -> bool:
    return not os.path.exists(target) and bool(_SPEC.match(target))


def detect_format(target: str) -> str:
    if is_spec(target):
        return "torch"
    suffix = Path(target).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in PT2_SUFFIXES:
        return "pt2"
    if suffix in SAFETENSORS_SUFFIXES:
        return "safetensors"
    if suffix in KERAS_SUFFIXES:
        return "keras"
    if suffix in TORCH_FILE_SUFFIXES:
        return "torch_file"
    if ":" in target and not os.path.exists(target):
        raise InitlintError(target, "not a file, and not a valid spec", "a spec is package.module:callable or path/to/file.py:callable")
    if not os.path.exists(target):
        raise InitlintError(target, "no such file")
    raise InitlintError(target, f"unsupported model format {suffix or '(no extension)'!r}", "initlint reads .onnx, .pt2, TorchScript, .pt/.pth state dicts, .safetensors, .keras and module:callable specs")


def load(target: str, options: LoadOptions | None = None) -> ModelGraph:
    options = options or LoadOptions()
    fmt = detect_format(target)
    if fmt == "onnx":
        from .onnx import load_onnx

        return load_onnx(target)
    if fmt == "keras":
        from .keras import load_keras_file

        return load_keras_file(target, options)
    from . import torch as torch_loader

    if fmt == "torch":
        return torch_loader.load_spec(target, options)
    if fmt == "pt2":
        return torch_loader.load_pt2(target, options)
    if fmt == "safetensors":
        return torch_loader.load_safetensors(target)
    return torch_loader.load_torch_file(target, options)
