"""Activation functions as numpy callables, by the canonical names the loaders use."""

from __future__ import annotations

import math

import numpy as np

_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[float])(x)


FUNCTIONS = {
    "identity": lambda x, a: x,
    "relu": lambda x, a: np.maximum(x, 0.0),
    "relu6": lambda x, a: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x, a: np.where(x > 0, x, a * x),
    "prelu": lambda x, a: np.where(x > 0, x, a * x),
    "elu": lambda x, a: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
    "selu": lambda x, a: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0))),
    "gelu": lambda x, a: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "silu": lambda x, a: x / (1 + np.exp(-x)),
    "mish": lambda x, a: x * np.tanh(np.logaddexp(0, x)),
    "tanh": lambda x, a: np.tanh(x),
    "sigmoid": lambda x, a: 1 / (1 + np.exp(-x)),
    "softplus": lambda x, a: np.logaddexp(0, x),
    "hardswish": lambda x, a: x * np.clip(x + 3, 0, 6) / 6,
    "hardsigmoid": lambda x, a: np.clip(x / 6 + 0.5, 0, 1),
    "hardtanh": lambda x, a: np.clip(x, -1, 1),
    "softsign": lambda x, a: x / (1 + np.abs(x)),
}
DEFAULT_ALPHA = {"leaky_relu": 0.01, "prelu": 0.25, "elu": 1.0}


def apply(name: str, x: np.ndarray, alpha: float | None = None) -> np.ndarray | None:
    """phi(x), or None for an activation initlint does not know."""
    fn = FUNCTIONS.get(name)
    if fn is None:
        return None
    return fn(np.asarray(x, dtype=np.float64), DEFAULT_ALPHA.get(name, 0.0) if alpha is None else alpha)


def blocks_gradient(name: str, x: np.ndarray) -> bool:
    """True when phi'(x) is exactly 0 for every element, as PyTorch's autograd computes it.

    ReLU'(0) = 0 in PyTorch (docs/science.md §3), so a pre-activation constant at <= 0 blocks.
    """
    x = np.asarray(x, dtype=np.float64)
    if name in ("relu", "relu6"):
        return bool(np.all(x <= 0) or (name == "relu6" and np.all((x <= 0) | (x >= 6))))
    if name == "hardtanh":
        return bool(np.all((x <= -1) | (x >= 1)))
    if name == "hardsigmoid":
        return bool(np.all((x <= -3) | (x >= 3)))
    return False
