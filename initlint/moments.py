"""First and second moments of a value as it passes one op, for the static signal model (docs/science.md §1, §3, §11).

A value is described by its common mean ``m`` (the component shared by every unit: the mean
of a ReLU's output, what a weight matrix with a non-zero mean sends into every unit), its
second moment ``q`` = E[h²] (which includes m²), and the input-dependent variance ``v`` (what
changes when the input changes; biases and means carry no information). Second moments, not
variances: a constant weight matrix is a rank-1 projection of the input's mean, not a
collapse of the signal.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from . import activations
from . import graph as g

# Quadrature grid for E over z ~ N(m, s²): z = m + s·t, t on [-10, 10].
_T = np.linspace(-10.0, 10.0, 4001)
_W = np.exp(-0.5 * _T * _T)
_W /= _W.sum()


@dataclass(frozen=True)
class Moments:
    q: float  # E[h²]
    m: float = 0.0  # common mean
    v: float | None = None  # input-dependent part of q (defaults to q)

    @property
    def var(self) -> float:
        return max(self.q - self.m * self.m, 0.0)

    @property
    def signal(self) -> float:
        return self.q if self.v is None else self.v


@functools.lru_cache(maxsize=8192)
def _activation_moments(name: str, alpha: float | None, mean: float, std: float) -> tuple[float, float, float] | None:
    z = mean + std * _T
    phi = activations.apply(name, z, alpha)
    if phi is None:
        return None
    scale = max(std, abs(mean), 1e-30)
    h = 1e-5 * scale * np.maximum(1.0, np.abs(_T))  # relative to the scale: kinks stay sharp
    dphi = (activations.apply(name, z + h, alpha) - activations.apply(name, z - h, alpha)) / (2 * h)
    return float(np.dot(_W, phi)), float(np.dot(_W, phi * phi)), float(np.dot(_W, dphi * dphi))


def _key(x: float) -> float:
    # Moments vary smoothly: 3 significant digits keep the cache small and exact enough.
    return float(f"{x:.3g}")


def activation_moments(name: str, q: float, m: float = 0.0, alpha: float | None = None) -> tuple[float, float, float] | None:
    """(E[φ(z)], E[φ(z)²], E[φ'(z)²]) for z ~ N(m, q - m²), or None for an unknown activation."""
    if not (q > 0 and math.isfinite(q)):
        q, m = 1.0, 0.0
    q = min(max(q, 1e-24), 1e24)
    m = max(min(m, math.sqrt(q)), -math.sqrt(q)) if math.isfinite(m) else 0.0
    std = math.sqrt(max(q - m * m, 0.0))
    size = std if std > 0 else abs(m)
    if size <= 0:
        return _activation_moments(name, alpha, 0.0, 0.0)
    # Cached on a rounded scale; the result is scaled back to the exact one, which is exact
    # for the homogeneous activations (the ReLU family) and within 0.5% for the others.
    key = _key(size)
    found = _activation_moments(name, alpha, _key(m / size) * key, key * (std / size))
    if found is None:
        return None
    r = size / key
    return found[0] * r, found[1] * r * r, found[2]


def activation_gains(name: str, q: float, alpha: float | None = None) -> tuple[float, float] | None:
    """(E[φ(z)²]/q, E[φ'(z)²]) for z ~ N(0, q), or None for an unknown activation (docs/science.md §3)."""
    if not (q > 0 and math.isfinite(q)):
        q = 1.0
    found = activation_moments(name, q, 0.0, alpha)
    if found is None:
        return None
    return found[1] / q, found[2]


def through_activation(name: str, x: Moments, alpha: float | None = None) -> tuple[Moments, float] | None:
    """The activation's output moments and its backward factor E[φ'²]."""
    found = activation_moments(name, x.q, x.m, alpha)
    if found is None:
        return None
    mean, second, slope2 = found
    return Moments(second, mean, min(slope2 * x.signal, second)), slope2


def through_weights(x: Moments, fan_in: int, w_mean: float, w_mean_sq: float, row_mean_sq: float, b_mean: float, b_mean_sq: float) -> Moments:
    """z = W·h + b: the input's common mean reaches every unit through the row sums of W.

    With h = m + h̃ (h̃ zero-mean, independent across units): E[z²] = fan_in²·E_i[(row mean)²]·m²
    + fan_in·E[W²]·(q - m²) + E[b²] + 2·fan_in·m·E[W]·E[b].
    """
    weighted = fan_in * fan_in * row_mean_sq * x.m * x.m + fan_in * w_mean_sq * x.var
    q = weighted + b_mean_sq + 2.0 * fan_in * x.m * w_mean * b_mean
    # What depends on the input keeps its share of the input through the weights; a bias adds none.
    signal = weighted * min(x.signal / x.q, 1.0) if x.q > 0 else 0.0
    return Moments(max(q, 0.0), fan_in * w_mean * x.m + b_mean, signal)


def row_mean_sq(weight: g.Tensor, fan_in: int, scale: float = 1.0, unit_stats=None) -> float:
    """E over units of the squared mean of a unit's weights: exact for constant rows, and
    mean² + Var/fan_in (the sampling spread of a row mean) for independent entries.
    ``unit_stats``: the statistics with one row per output unit, where they differ."""
    stats = weight.stats
    units = unit_stats or stats
    if units.rows > 1 and units.constant_rows == units.rows:
        return stats.mean_sq * scale * scale
    if units.rows > 1 and units.duplicate_rows == units.rows - 1:
        return stats.mean * stats.mean * scale * scale  # one row tiled: its mean, in every unit
    return (stats.mean * stats.mean + stats.var / max(fan_in, 1)) * scale * scale


def add(values: list[Moments], const_mean: float = 0.0, const_mean_sq: float = 0.0) -> Moments:
    """A sum of independent values (and a constant): variances add, means add."""
    m = sum(x.m for x in values) + const_mean
    var = sum(x.var for x in values) + max(const_mean_sq - const_mean * const_mean, 0.0)
    return Moments(var + m * m, m, sum(x.signal for x in values))



def scale(x: Moments, factor: float) -> Moments:
    return Moments(x.q * factor * factor, x.m * factor, x.signal * factor * factor)


def product(values: list[Moments]) -> Moments:
    """An elementwise product of independent values."""
    q = math.prod(x.q for x in values)
    m = math.prod(x.m for x in values)
    signal = q * min(1.0, sum(x.signal / x.q for x in values if x.q > 0))
    return Moments(q, m, signal)
