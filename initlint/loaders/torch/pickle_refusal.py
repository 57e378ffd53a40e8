"""Refusing files whose loading would unpickle or run code, unless the user trusts them."""

from __future__ import annotations

from ...errors import InitlintError
from ..archive import read_member, strip_root


TORCHSCRIPT_HINT = (
    "pass --trust-code only if you trust where the file came from; "
    "or lint the model's spec (module:callable), a state dict / .safetensors, or a torch.export .pt2 instead"
)
PICKLE_HINT = (
    "pass --trust-code (or its old name --trust-pickle) only if you trust where the file came from: unpickling runs arbitrary code from it; "
    "or save a state dict / .safetensors / torch.export .pt2 instead"
)


def _refuse_pt2_code(torch, target: str, names: list[str]) -> None:
    """torch.export.load unpickles with weights_only=False in places (pickled tensor subclasses,
    opaque constants, the sample-inputs fallback, the pre-2.8 layout) and can load compiled
    AOTInductor libraries. Refuse every such archive unless --trust-pickle."""
    import io
    import json
    import zipfile

    members = dict(zip(strip_root(names), names))
    if "archive_version" not in members:
        raise InitlintError(target, "refused: an old-layout .pt2 archive can only be read by unpickling it", PICKLE_HINT)
    risky = [n for n in members if n.startswith("data/aotinductor/") or n.endswith((".so", ".dll", ".dylib"))]
    if risky:
        raise InitlintError(target, f"refused: the archive contains compiled code ({risky[0]}) that loading would run", PICKLE_HINT)
    with zipfile.ZipFile(target) as archive:
        for name, full in members.items():
            if name.startswith(("data/weights/", "data/constants/")) and name.endswith("_config.json"):
                try:
                    config = json.loads(read_member(target, archive, full)).get("config", {})
                except (ValueError, AttributeError) as exc:
                    raise InitlintError(target, f"corrupt .pt2 archive: {name} is not valid JSON ({exc})") from None
                for fqn, meta in config.items() if isinstance(config, dict) else ():
                    path = str(meta.get("path_name", "")) if isinstance(meta, dict) else ""
                    if not isinstance(meta, dict) or meta.get("use_pickle") or not path.startswith(("weight_", "tensor_")):
                        raise InitlintError(target, f"refused: {fqn!r} is stored as a pickled object, and loading it would unpickle", PICKLE_HINT)
            elif name.endswith(".pt"):  # sample inputs, old-layout weights: torch.load tries weights_only=True first
                try:
                    torch.load(io.BytesIO(archive.read(full)), weights_only=True, map_location="cpu")
                except Exception:
                    raise InitlintError(target, f"refused: archive member {name} needs full unpickling", PICKLE_HINT) from None


def _unsupported_global(message: str) -> str:
    import re

    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    return f" (it references {match.group(1)})" if match else ""
