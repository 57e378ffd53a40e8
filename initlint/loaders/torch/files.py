"""Model files on disk: .pt2 archives, TorchScript and torch.save files, .safetensors."""

from __future__ import annotations

import os
import warnings

from ...errors import InitlintError, require_torch
from ...graph import ModelGraph
from ..archive import check_zip, is_zip, read_member, strip_root
from .export_graph import graph_from_exported
from .module_graph import graph_from_module
from .pickle_refusal import PICKLE_HINT, TORCHSCRIPT_HINT, _refuse_pt2_code, _unsupported_global
from .quiet import _quiet_torch, _short
from .state_dict import _graph_from_state_dict
from .torchscript import _load_torchscript


def load_pt2(target: str, options) -> ModelGraph:
    """A torch.export archive: zip-checked, refused where loading would unpickle, then its ATen graph."""
    torch = require_torch(target)
    _require_file(target)
    names = check_zip(target)
    trusted = getattr(options, "trust_pickle", False)
    if not trusted:
        _refuse_pt2_code(torch, target, names)
    _check_pt2_expressions(target, names)  # sympify evaluates them as Python, trusted or not
    _check_pt2_weight_sizes(torch, target, names)  # torch.export.load allocates what they declare
    try:
        with _quiet_torch(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(target)
    except Exception as exc:
        raise InitlintError(target, f"not a loadable torch.export archive ({type(exc).__name__}: {_short(exc)})") from None
    graph = graph_from_exported(program, target, "pt2")
    if not trusted:
        # Running the program runs the archive's guard code: the probe does it only on request.
        graph.metadata["probe_unavailable"] = "the probe runs a .pt2 program only with --trust-code (running it runs the archive's guard code)"
        return graph
    try:
        graph.metadata["module"] = program.module()  # runnable: the probe runs a copy
    except Exception as exc:
        graph.notes.append(f"the exported program cannot be run here ({type(exc).__name__}); the probe will not run")
    return graph


def _check_pt2_expressions(target: str, names: list[str]) -> None:
    """Every symbolic-size string of the archive's programs must be in the strict grammar
    (initlint.safe_expressions) before torch.export.load hands it to sympy.sympify."""
    import json
    import zipfile

    from ...safe_expressions import UnsafeExpression, check_expression

    def strings(value, key=None):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from strings(v, k)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v, key)
        elif key == "expr_str":
            yield value

    with zipfile.ZipFile(target) as archive:
        for full, name in zip(names, strip_root(names)):
            if not (name.startswith("models/") and name.endswith(".json")):
                continue
            try:
                program = json.loads(read_member(target, archive, full))
            except (ValueError, RecursionError) as exc:
                raise InitlintError(target, f"corrupt .pt2 archive: {name} is not valid JSON ({type(exc).__name__})") from None
            found = list(strings(program))
            if isinstance(program, dict) and isinstance(program.get("range_constraints"), dict):
                found += list(program["range_constraints"])
            for text in found:
                try:
                    check_expression(text)
                except UnsafeExpression as exc:
                    raise InitlintError(target, f"refused: {name} holds a size expression that is not plain arithmetic ({exc}); loading would evaluate it as Python") from None


def _check_pt2_weight_sizes(torch, target: str, names: list[str]) -> None:
    """Every raw weight and constant the archive's configs declare must fit in the bytes its
    file holds: torch.export.load allocates each tensor at its declared size first, so a 10 KB
    archive declaring a [100000, 5000] weight would cost 2 GB before anything fails."""
    import json
    import zipfile

    try:
        from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE as dtypes
    except ImportError:  # another torch's layout: its own loader's checks stand
        return
    with zipfile.ZipFile(target) as archive:
        sizes = dict(zip(strip_root(names), (archive.getinfo(n).file_size for n in names)))
        for full, name in zip(names, strip_root(names)):
            if not (name.startswith("data/") and name.endswith("_config.json")):
                continue
            try:
                config = json.loads(read_member(target, archive, full)).get("config", {})
            except (ValueError, RecursionError, AttributeError):
                raise InitlintError(target, f"corrupt .pt2 archive: {name} is not a valid config") from None
            folder = name.rsplit("/", 1)[0]
            for tensor_name, entry in (config.items() if isinstance(config, dict) else ()):
                needed = _declared_bytes(entry, dtypes, torch)
                if needed is None:
                    continue
                held = sizes.get(f"{folder}/{entry.get('path_name')}")
                if held is None or needed > held:
                    raise InitlintError(
                        target,
                        f"corrupt .pt2 archive: {_short(str(tensor_name))[:80]!r} declares {needed:,} bytes but the archive holds {held or 0:,} for it",
                    )


def _declared_bytes(entry, dtypes, torch) -> int | None:
    """Bytes a raw (not pickled) tensor entry needs: its last element's offset, plus one, times
    the item size; None where the entry is not a raw tensor with integer sizes."""
    if not isinstance(entry, dict) or entry.get("use_pickle") is not False or not isinstance(entry.get("tensor_meta"), dict):
        return None
    meta = entry["tensor_meta"]
    try:
        sizes = [int(d["as_int"]) for d in meta["sizes"]]
        strides = [int(d["as_int"]) for d in meta["strides"]]
        offset = int(meta.get("storage_offset", {}).get("as_int", 0))
        dtype = dtypes.get(meta["dtype"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if dtype is None or len(sizes) != len(strides) or any(d < 0 for d in sizes):
        return None
    if 0 in sizes:
        return 0
    itemsize = torch.empty((), dtype=dtype).element_size()
    return (offset + sum((d - 1) * abs(s) for d, s in zip(sizes, strides)) + 1) * itemsize


def load_torch_file(target: str, options) -> ModelGraph:
    """``.pt/.pth/...``: a TorchScript archive, or torch.save output (a state dict unless --trust-pickle)."""
    torch = require_torch(target)
    _require_file(target)
    if is_zip(target):
        names = strip_root(check_zip(target))
        if any(n.startswith("code/") for n in names) or "constants.pkl" in names:
            if not getattr(options, "trust_pickle", False):
                raise InitlintError(target, "refused: a TorchScript archive; loading it runs the code it carries (its scripted methods, e.g. __setstate__)", TORCHSCRIPT_HINT)
            return _load_torchscript(torch, target)
    return _load_torch_save(torch, target, options)


def load_safetensors(target: str) -> ModelGraph:
    _require_file(target)
    from ..safetensors_reader import load_safetensors as read

    return read(target)


def _require_file(target: str) -> None:
    if not os.path.isfile(target):
        raise InitlintError(target, "no such file")


def _load_torch_save(torch, target: str, options) -> ModelGraph:
    import pickle

    trusted = getattr(options, "trust_pickle", False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol notices; initlint reports problems itself
            # mmap: a zip-format checkpoint's tensors stay views on the file, read once by the stats pass
            obj = torch.load(target, map_location="cpu", weights_only=not trusted, mmap=is_zip(target))
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            found = _unsupported_global(str(exc))
            raise InitlintError(
                target,
                f"refused: the file is a pickle of Python objects{found}, not only tensors; initlint does not unpickle by default",
                PICKLE_HINT,
            ) from None
        raise InitlintError(target, f"not a readable PyTorch file ({_short(exc)})") from None
    except Exception as exc:
        raise InitlintError(target, f"not a readable PyTorch file ({type(exc).__name__}: {_short(exc)})") from None
    if isinstance(obj, torch.jit.ScriptModule):  # only reachable with the opt-in (unpickling)
        return _load_torchscript(torch, target)
    if isinstance(obj, torch.nn.Module):
        graph = graph_from_module(obj, target, example_input=getattr(obj, "example_input", None), options=options)
        graph.notes.append("unpickled with --trust-pickle")
        return graph
    return _graph_from_state_dict(torch, target, obj)
