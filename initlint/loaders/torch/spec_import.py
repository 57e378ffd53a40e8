"""``module:callable`` specs: importing the user's code and calling it for the model."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from ...errors import InitlintError, require_torch
from ...graph import ModelGraph
from .module_graph import graph_from_module


def load_spec(spec: str, options) -> ModelGraph:
    """``package.module:callable`` or ``path/to/file.py:callable`` returning an nn.Module."""
    torch = require_torch(spec)
    module_part, _, attr = spec.rpartition(":")
    # initlint reads Keras models on Keras' PyTorch backend; a spec that imports keras without
    # choosing a backend would otherwise get TensorFlow, which is not needed (nor installed).
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        if module_part.endswith(".py"):
            path = Path(module_part)
            if not path.is_file():
                raise InitlintError(spec, f"no such file {module_part!r}")
            name = f"_initlint_spec_{abs(hash(str(path.resolve())))}"
            loader_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            sys.path.insert(0, str(path.parent.resolve()))
            try:
                loader_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.parent.resolve()))
        else:
            sys.path.insert(0, ".")
            try:
                module = importlib.import_module(module_part)
            finally:
                sys.path.remove(".")
    except InitlintError:
        raise
    except ImportError as exc:
        raise InitlintError(spec, f"cannot import {module_part!r}: {exc}") from None
    except Exception as exc:
        raise InitlintError(spec, f"importing {module_part!r} raised {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InitlintError(spec, f"{module_part!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InitlintError(spec, f"{attr!r} is not callable")
    try:
        model = obj() if not isinstance(obj, torch.nn.Module) else obj
    except Exception as exc:
        raise InitlintError(spec, f"calling {attr}() raised {type(exc).__name__}: {exc}") from None
    example_input = None
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], torch.nn.Module):
        model, example_input = model  # the callable may return (model, example_input)
    if not isinstance(model, torch.nn.Module):
        raise InitlintError(spec, f"{attr}() returned {type(model).__name__}, not a torch.nn.Module")
    if example_input is None:
        example_input = getattr(model, "example_input", None)
    graph = graph_from_module(model, spec, example_input=example_input, options=options)
    graph.metadata["example_input"] = example_input
    return graph
