"""Read Keras 3 models (on Keras' PyTorch backend) into a ModelGraph.

Two ways in: a ``.keras`` archive, loaded in Keras' safe mode, and a ``module:callable`` spec
that returns a Keras model (on the torch backend that model is also a ``torch.nn.Module``, but
its layers are not torch submodules, so tracing it as one finds nothing). The graph is built
from Keras' own layer structure -- the Sequential or functional graph, layer by layer -- never
by tracing. Locations are Keras names (``dense_3/kernel``) and kernels keep Keras' layout
([in, out] for Dense, [k..., in, out] for convolutions: see ``layers.py``).
"""

from __future__ import annotations

import os

from ...errors import InitlintError
from ...graph import ModelGraph
from .structure import graph_from_keras

KERAS_HINT = "install the keras extra: pip install 'initlint[keras]' (Keras 3 on its PyTorch backend; TensorFlow is not needed)"
UNSAFE_HINT = (
    "pass --trust-code only if you trust where the file came from: Keras' unsafe mode runs code "
    "stored in the archive (a Lambda layer's bytecode)"
)

__all__ = ["graph_from_keras", "is_keras_model", "load_keras_file", "require_keras"]


def require_keras(target: str):
    """Import Keras on its PyTorch backend, or say clearly why this input cannot be read."""
    os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras would otherwise look for TensorFlow
    try:
        import keras
    except ImportError:
        raise InitlintError(target, "this input needs Keras 3, which is not installed", KERAS_HINT) from None
    except Exception as exc:  # e.g. KERAS_BACKEND names a backend that is not installed
        raise InitlintError(target, f"Keras could not be imported ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})", KERAS_HINT) from None
    if not hasattr(keras, "version") or not keras.version().startswith("3"):
        raise InitlintError(target, f"initlint reads Keras 3 models; Keras {getattr(keras, '__version__', '?')} is installed", KERAS_HINT)
    backend = keras.backend.backend()
    if backend != "torch":
        raise InitlintError(
            target,
            f"Keras runs on its {backend!r} backend here; initlint reads Keras models on the PyTorch backend",
            "set KERAS_BACKEND=torch",
        )
    return keras


def is_keras_model(obj) -> bool:
    """True for a Keras 3 model or layer, without importing Keras when it is not loaded."""
    import sys

    if "keras" not in sys.modules:
        return False
    return any(cls.__module__.startswith("keras.") and cls.__name__ == "Layer" for cls in type(obj).__mro__)


def load_keras_file(target: str, options) -> ModelGraph:
    """A ``.keras`` archive: zip-checked, then loaded in safe mode (no code from the file runs)."""
    from ..archive import check_zip

    if not os.path.isfile(target):
        raise InitlintError(target, "no such file")
    names = check_zip(target)
    if "config.json" not in names:
        raise InitlintError(target, "not a Keras archive (no config.json inside)", "initlint reads Keras 3 .keras files; re-save older .h5 models with model.save('model.keras')")
    keras = require_keras(target)
    trusted = bool(getattr(options, "trust_pickle", False))
    try:
        model = keras.saving.load_model(target, compile=False, safe_mode=not trusted)
    except ValueError as exc:
        message = " ".join(str(exc).split())
        if "safe_mode" in message or "unsafe" in message.lower():
            raise InitlintError(target, "refused: the archive holds a layer that only Keras' unsafe mode can load (a Lambda layer's code)", UNSAFE_HINT) from None
        raise InitlintError(target, f"not a loadable Keras archive ({type(exc).__name__}: {message[:200]})") from None
    except Exception as exc:
        message = " ".join(str(exc).split())
        if "Could not locate" in message or "custom_objects" in message:
            raise InitlintError(
                target,
                f"the archive uses a custom Keras class that is not registered here ({message[:160]})",
                "lint a module:callable spec that imports the class and returns the model instead",
            ) from None
        raise InitlintError(target, f"not a loadable Keras archive ({type(exc).__name__}: {message[:200]})") from None
    graph = graph_from_keras(model, target, fmt="keras", options=options)
    if trusted:
        graph.notes.append("loaded in Keras' unsafe mode (--trust-code)")
    return graph

