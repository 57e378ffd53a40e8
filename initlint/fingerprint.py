"""Which init scheme produced a weight tensor, inferred from its values (docs/science.md §7).

Two questions, answered separately and then combined:
- the *family* (the shape of the distribution): uniform, truncated normal, normal, orthogonal,
  from the excess kurtosis, max|w - mean|/std and, for orthogonal, exact orthonormality;
- the *scale*: a candidate is accepted when |ln(s²/σ_c²)| <= max(0.05, 4·sqrt((κ+2)/n)), the
  sampling spread of s² = mean(w²) for n values of a family with excess kurtosis κ.

A result is "identified" when every accepted candidate is equivalent (same family and variance,
e.g. Xavier and LeCun on a square layer), "ambiguous" when several non-equivalent ones fit (small
layers: the set is reported rather than a guess), "unrecognized" when none fits (trained weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import graph as g

UNIFORM, TRUNCATED, NORMAL, ORTHOGONAL = "uniform", "truncated_normal", "normal", "orthogonal"
# Excess kurtosis of each family (orthogonal matrices' entries are close to normal).
KURTOSIS = {UNIFORM: -1.2, TRUNCATED: -0.63, NORMAL: 0.0, ORTHOGONAL: 0.0}
# max|w - m|/s: U(-a, a) never exceeds sqrt(3); a normal truncated at 2σ never exceeds 2/0.8796.
UNIFORM_MAX_DEV = math.sqrt(3.0)
TRUNCATED_MAX_DEV = 2.0 / 0.8796256610342398
# Variance of N(0, 1) truncated at ±2: Keras' TruncatedNormal(stddev=s) has variance s²·this.
TRUNCATED_VARIANCE = 0.7737413035499232
# Rows sampled for the orthonormality test: W_S W_Sᵀ = g²·I exactly for an orthogonal init,
# while for random weights the off-diagonal entries are ~1/sqrt(cols).
ORTHO_TOLERANCE = 2e-3


@dataclass(frozen=True)
class Scheme:
    name: str
    family: str
    var: float
    call: str  # how a user writes it in PyTorch


@dataclass
class Fingerprint:
    status: str  # "identified" | "ambiguous" | "unrecognized" | "untestable"
    matches: list[tuple[Scheme, float]] = field(default_factory=list)  # (scheme, s²/σ_c² - 1), best first
    families: list[str] = field(default_factory=list)  # families the shape allows
    std: float = 0.0
    sigma_w2: float = 0.0  # fan_in · s², the per-layer forward gain of a linear layer

    @property
    def names(self) -> list[str]:
        return [scheme.name for scheme, _ in self.matches]

    @property
    def best(self) -> Scheme | None:
        return self.matches[0][0] if self.matches else None

    def has(self, *prefixes: str) -> bool:
        return any(name.startswith(prefixes) for name in self.names)

    def describe(self) -> str:
        if self.status == "untestable":
            return f"too few values to fingerprint (std={self.std:.3g})"
        if not self.matches:
            return f"unrecognized, std={self.std:.3g} (matches no init scheme for this layer's fans: trained or custom weights)"
        scheme, off = self.matches[0]
        text = f"{scheme.name}, variance within {abs(off) * 100:.0f}%" if abs(off) >= 0.005 else f"{scheme.name}, variance within 0.5%"
        if len(self.matches) > 1:
            others = " or ".join(self.names[1:])
            text += f" (also {others}{'; equivalent here' if self.status == 'identified' else ': too close to tell apart'})"
        return text

    def to_json(self) -> dict:
        return {"status": self.status, "matches": self.names, "std": self.std, "description": self.describe()}


def schemes_for(fan_in: int, fan_out: int, rows: int, cols: int) -> list[Scheme]:
    """Every candidate scheme with its variance for a layer with these fans (docs/science.md §2)."""
    glorot = 2.0 / (fan_in + fan_out)
    out = []
    for family in (UNIFORM, NORMAL, TRUNCATED):
        suffix = {UNIFORM: "uniform", NORMAL: "normal", TRUNCATED: "truncated_normal"}[family]
        fn = {UNIFORM: "uniform_", NORMAL: "normal_", TRUNCATED: "trunc_normal_"}[family]
        kaiming = "kaiming_uniform_" if family == UNIFORM else "kaiming_normal_"
        xavier = "xavier_uniform_" if family == UNIFORM else "xavier_normal_"
        out += [
            Scheme(f"glorot_{suffix}", family, glorot, f"nn.init.{xavier}(w)"),
            Scheme(f"he_{suffix}_fan_in", family, 2.0 / fan_in, f"nn.init.{kaiming}(w, nonlinearity='relu')"),
            Scheme(f"he_{suffix}_fan_out", family, 2.0 / fan_out, f"nn.init.{kaiming}(w, mode='fan_out', nonlinearity='relu')"),
            Scheme(f"lecun_{suffix}", family, 1.0 / fan_in, f"nn.init.{kaiming}(w, nonlinearity='linear')"),
            Scheme("normal_0.02" if family == NORMAL else f"{suffix}_0.02", family, 4e-4, f"nn.init.{fn}(w, std=0.02)"),
        ]
    out += [
        Scheme("pytorch_default", UNIFORM, 1.0 / (3.0 * fan_in), "nn.init.kaiming_uniform_(w, a=math.sqrt(5)) (PyTorch's default)"),
        Scheme("standard_normal", NORMAL, 1.0, "nn.init.normal_(w) (N(0, 1))"),
        Scheme("orthogonal", ORTHOGONAL, 1.0 / max(rows, cols), "nn.init.orthogonal_(w)"),
        # Keras' fixed-scale defaults (its he_normal, glorot_normal and lecun_normal are the
        # truncated normals above: Keras scales them so the variance is the scheme's).
        Scheme("keras_random_normal", NORMAL, 0.05**2, "keras.initializers.RandomNormal() (stddev 0.05)"),
        Scheme("keras_random_uniform", UNIFORM, 0.05**2 / 3.0, "keras.initializers.RandomUniform() (±0.05)"),
        Scheme("keras_truncated_normal", TRUNCATED, 0.05**2 * TRUNCATED_VARIANCE, "keras.initializers.TruncatedNormal() (stddev 0.05, cut at 2 stddev)"),
    ]
    return out


def scale_tolerance(n: int, family: str) -> float:
    return max(0.05, 4.0 * math.sqrt((KURTOSIS[family] + 2.0) / max(n, 1)))


def plausible_families(stats, n: int) -> list[str]:
    """Families whose shape the sample is consistent with (4 standard errors of the kurtosis)."""
    kurt_tol = 4.0 * math.sqrt(24.0 / max(n, 1)) + 0.05
    dev = stats.max_abs_dev
    # The largest |z| of n normal draws stays below 2.3 with probability (0.9786)^n.
    normal_max_floor = TRUNCATED_MAX_DEV if n >= 500 else 0.0
    # The sample std is itself off by about ½·sqrt((κ+2)/n): allow 4 of those on the bounds.
    slack = 1.0 + 2.0 * math.sqrt(1.4 / max(n, 1)) + 1e-3
    found = []
    if dev <= UNIFORM_MAX_DEV * slack and abs(stats.excess_kurtosis - KURTOSIS[UNIFORM]) <= kurt_tol:
        found.append(UNIFORM)
    # Keras' torch backend truncates by rejection with four tries and keeps about four values in
    # a million untruncated: past the bound, a kurtosis nearest the truncated one still decides.
    nearest = min((UNIFORM, TRUNCATED, NORMAL), key=lambda family: abs(stats.excess_kurtosis - KURTOSIS[family]))
    if (dev <= TRUNCATED_MAX_DEV * slack or nearest == TRUNCATED) and abs(stats.excess_kurtosis - KURTOSIS[TRUNCATED]) <= kurt_tol:
        found.append(TRUNCATED)
    if dev >= normal_max_floor and abs(stats.excess_kurtosis - KURTOSIS[NORMAL]) <= kurt_tol:
        found.append(NORMAL)
    return found


def is_orthogonal(weight: g.Tensor, unit_axis: int = 0) -> bool:
    """Rows (or columns, whichever are fewer) orthonormal up to one gain: orthogonal_/eye_/dirac_.

    torch's orthogonal_ works on the (shape[0], rest) matrix; orthogonality does not change
    under transposition, so the test reads the lines the statistics pass kept of that matrix
    (``unit_axis`` is accepted for callers that know the layer's unit axis; it is not needed).
    """
    if weight.ndim < 2 or not 0 < weight.stats.var < math.inf or not math.isfinite(weight.stats.mean_sq):
        return False  # orthogonal weights are bounded by their gain: no overflowing moments
    rows = weight.shape[0]
    cols = weight.size // max(rows, 1)
    sample = weight.stats.sample_lines
    if min(rows, cols) < 2 or sample is None or len(sample) < 2:
        return False
    gram = sample @ sample.T
    gain2 = float(np.mean(np.diag(gram)))
    if gain2 <= 0:
        return False
    return bool(np.max(np.abs(gram / gain2 - np.eye(len(sample)))) < ORTHO_TOLERANCE)


def fingerprint(layer: g.Layer) -> Fingerprint | None:
    """The init scheme of ``layer``'s weight, or None when the layer has no fans to test against."""
    weight = layer.weight
    if weight is None or weight.ndim < 2 or not layer.fan_in or not layer.fan_out:
        return None
    cache = layer.__dict__.setdefault("_fingerprint", {})
    key = (id(weight), layer.fan_in, layer.fan_out)
    if key not in cache:
        cache[key] = _fingerprint(weight, layer.fan_in, layer.fan_out, layer.unit_axis, scale=float(layer.attrs.get("alpha", 1.0)) if layer.op == "Gemm" else 1.0)
    return cache[key]


def _fingerprint(weight: g.Tensor, fan_in: int, fan_out: int, unit_axis: int = 0, scale: float = 1.0) -> Fingerprint:
    stats = weight.stats
    n = stats.finite_count
    mean_sq = stats.mean_sq * scale * scale
    result = Fingerprint("unrecognized", std=math.sqrt(mean_sq), sigma_w2=fan_in * mean_sq)
    if n < 16 or mean_sq <= 0 or stats.nonfinite_count:
        result.status = "untestable" if n < 16 else "unrecognized"
        return result
    rows = weight.shape[unit_axis % weight.ndim]
    cols = weight.size // max(rows, 1)
    if is_orthogonal(weight, unit_axis):
        families = [ORTHOGONAL]
    else:
        families = plausible_families(stats, n)
    result.families = families
    matches = []
    for scheme in schemes_for(fan_in, fan_out, rows, cols):
        if scheme.family not in families:
            continue
        off = math.log(mean_sq / scheme.var)
        if scheme.family == ORTHOGONAL:
            # Any gain: orthogonal_(gain=g), eye_ and dirac_ are identified by their structure.
            gain = math.sqrt(mean_sq / scheme.var)
            name = "orthogonal" if abs(gain - 1) < 0.01 else f"orthogonal_gain_{gain:.3g}"
            matches.append((Scheme(name, ORTHOGONAL, mean_sq, f"nn.init.orthogonal_(w, gain={gain:.3g})"), 0.0))
            continue
        if abs(off) <= scale_tolerance(n, scheme.family):
            matches.append((scheme, mean_sq / scheme.var - 1.0))
    matches.sort(key=lambda m: abs(math.log1p(m[1])))
    result.matches = matches
    if not matches:
        result.status = "unrecognized"
    elif all(_equivalent(matches[0][0], other) for other, _ in matches[1:]):
        result.status = "identified"
    else:
        result.status = "ambiguous"
    return result


def _equivalent(a: Scheme, b: Scheme) -> bool:
    return a.family == b.family and abs(math.log(a.var / b.var)) < 0.01

