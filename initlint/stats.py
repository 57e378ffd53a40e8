"""Statistics of a weight tensor, computed in one chunked pass and shared by every rule.

Every rule that needs a number about a tensor's values reads it from :class:`TensorStats`;
none of them walks the values again. The pass works on whole rows (output units) at a time,
so per-unit facts (constant rows, duplicate rows) come out of the same pass as the moments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable

import numpy as np

# 1 MB of float64 per chunk: the dozen passes of the statistics run in the CPU's cache rather
# than streaming each pass from memory, and numpy's per-call overhead stays a few percent.
CHUNK_ELEMENTS = 1 << 17
# Lines kept for the orthogonality test, and the longest column it keeps whole.
SAMPLE_LINES = 64
MAX_SAMPLED_COLUMN = 1 << 16


@dataclass
class TensorStats:
    count: int
    finite_count: int
    mean: float
    var: float  # population variance of the finite values
    mean_sq: float  # E[w^2], the "s^2" of docs/science.md §7
    excess_kurtosis: float
    min: float
    max: float
    nonfinite_count: int
    first_nonfinite: int | None  # flat index
    nan_count: int
    zero_count: int
    rows: int  # output units (shape[0]); 1 for 0-d and 1-d tensors
    constant_rows: int  # rows whose elements are all equal
    zero_rows: int
    # Groups of identical non-zero rows, each a list of row indices (at most a few are kept).
    duplicate_row_groups: list[list[int]] = field(default_factory=list)
    duplicate_rows: int = 0  # rows that repeat an earlier row
    # The same statistics with another axis as the unit (row) axis, from the same pass
    # (compute_stats' unit_axes): only the per-unit fields differ.
    along: dict[int, TensorStats] = field(default_factory=dict, repr=False, compare=False)
    # Evenly spaced lines of the (rows, rest) matrix, kept from the pass for the orthogonality
    # test of init fingerprinting: rows when rows <= rest, else columns (all rows of each).
    sample_lines: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    @property
    def all_zero(self) -> bool:
        return self.count > 0 and self.zero_count == self.count

    @property
    def all_equal(self) -> bool:
        return self.count > 0 and self.nonfinite_count == 0 and self.min == self.max

    @property
    def max_abs_dev(self) -> float:
        """max |w - mean| / std: uniform < 1.85 < truncated normal < 2.5 < normal (docs/science.md §7)."""
        if self.var <= 0:
            return 0.0
        return max(abs(self.max - self.mean), abs(self.min - self.mean)) / self.std


# Row fingerprints: sum(mix(bits[i]) * M[i]) mod 2**64 with M[i] an odd multiplier per position.
# Exact integer arithmetic, so identical rows always match (no rounding, whatever the chunking),
# and the mixing (see _mixed_bits) makes a match of two different rows as unlikely as a
# collision of a 64-bit hash of their bytes.
_MIX = np.uint64(0xBF58476D1CE4E5B9)
_HALF = np.uint64(32)


def _mixed_bits(values: np.ndarray, out: np.ndarray | None = None, spare: np.ndarray | None = None) -> np.ndarray:
    """A bijection of the float64 bit patterns that spreads every bit into the low ones.

    Round numbers (1.0, 0.5, 0) have dozens of trailing zero bits; multiplied by a position's
    odd multiplier mod 2**64 they would keep only a few bits of it, and two one-hot rows could
    share a fingerprint. Folded and multiplied first, a difference of patterns has as few
    trailing zeros as a random number's, so different rows collide with probability ~2**-64."""
    bits = values.view(np.uint64)
    mixed = np.right_shift(bits, _HALF, out=out)
    mixed ^= bits
    mixed *= _MIX
    mixed ^= np.right_shift(mixed, _HALF, out=spare)
    return mixed


def _multipliers(n: int) -> np.ndarray:
    """n fixed odd pseudo-random uint64s (splitmix64 of 1, 2, 3, ...: no numpy.random import)."""
    cached = _multipliers.__dict__.get("values")
    if cached is None or cached.size < n:
        with np.errstate(over="ignore"):
            z = np.arange(1, max(n, 1024) + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            cached = (z ^ (z >> np.uint64(31))) | np.uint64(1)
        _multipliers.values = cached
    return cached[:n]


class _UnitAxis:
    """Per-unit facts (constant, zero, duplicate units) along ``axis`` != 0, gathered from the
    axis-0 row chunks of the main pass, so a weight stored [in, out] needs no second pass."""

    def __init__(self, shape: tuple[int, ...], axis: int):
        self.shape, self.axis, self.units = shape, axis, shape[axis]
        self.per_row = math.prod(shape[1:]) // self.units  # elements of one unit in one row
        self.lo = np.full(self.units, np.inf)
        self.hi = np.full(self.units, -np.inf)
        self.fingerprint = np.zeros(self.units, np.uint64)
        self.other = tuple(i for i in range(len(shape)) if i != axis)
        self.row = 0

    def add(self, flat: np.ndarray, mixed: np.ndarray | None) -> None:
        """One chunk of whole rows; ``mixed`` its _mixed_bits when the caller has them."""
        block = flat.reshape(-1, *self.shape[1:])
        rows = block.shape[0]
        np.minimum(self.lo, block.min(axis=self.other), out=self.lo)
        np.maximum(self.hi, block.max(axis=self.other), out=self.hi)
        # Position of each element within its unit, in the order of the unit-first layout;
        # einsum sums the products in exact uint64 arithmetic without a temporary.
        first, last = self.row * self.per_row, (self.row + rows) * self.per_row
        weights = _multipliers(last)[first:last].reshape([rows, *(d for i, d in enumerate(self.shape) if i and i != self.axis)])
        letters = "abcdefghijklmnopqrstuvwxyz"[: len(self.shape)]
        spec = f"{letters},{letters.replace(letters[self.axis], '')}->{letters[self.axis]}"
        mixed = _mixed_bits(flat) if mixed is None else mixed
        self.fingerprint += np.einsum(spec, mixed.reshape(block.shape), weights)
        self.row += rows

    def stats(self, main: TensorStats) -> TensorStats:
        if self.units == 1:  # as compute_stats counts a single row
            return replace(main, rows=1, constant_rows=int(main.min == main.max), zero_rows=int(main.zero_count == main.count), along={})
        if main.count // self.units <= 1:  # one-element units: no per-unit facts, as in compute_stats
            return replace(main, rows=self.units, constant_rows=0, zero_rows=0, along={})
        constant = self.lo == self.hi
        zero = constant & (self.lo == 0)
        self.fingerprint[zero] = 0
        groups = _duplicate_groups([self.fingerprint])
        return replace(
            main,
            rows=self.units,
            constant_rows=int(constant.sum()),
            zero_rows=int(zero.sum()),
            duplicate_rows=sum(len(g) - 1 for g in groups),
            duplicate_row_groups=groups[:5],
            along={},
        )


def _duplicate_groups(fingerprints: list[np.ndarray]) -> list[list[int]]:
    """Groups of rows with equal non-zero fingerprints, ordered by their first row."""
    keys = np.concatenate(fingerprints)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    repeated = np.flatnonzero((ordered[1:] == ordered[:-1]) & (ordered[1:] != 0))
    groups: dict[int, list[int]] = {}
    for i in repeated:
        group = groups.setdefault(int(ordered[i]), [int(order[i])])
        group.append(int(order[i + 1]))
    return sorted(sorted(g) for g in groups.values())


def compute_stats(shape: tuple[int, ...], chunks: Iterable[np.ndarray], unit_axes: Iterable[int] = ()) -> TensorStats:
    """One pass over ``chunks``: float arrays of whole rows, in order, flattened or 2-D.

    For each axis in ``unit_axes`` the statistics with that axis as the unit axis come from
    the same pass, in ``.along[axis]`` (left out when the tensor holds NaN or infinity).
    """
    # Weights near the float64 limit overflow the power sums to inf: that is a result (NaN/inf
    # moments), not something to warn about on stderr.
    with np.errstate(over="ignore", invalid="ignore"):
        return _compute_stats(shape, chunks, unit_axes)


def _compute_stats(shape: tuple[int, ...], chunks: Iterable[np.ndarray], unit_axes: Iterable[int]) -> TensorStats:
    count = math.prod(shape)
    rows = shape[0] if len(shape) >= 2 else 1
    row_len = count // rows if rows else 0
    axes = [_UnitAxis(shape, a) for a in sorted(set(unit_axes)) if 0 < a < len(shape) <= 26 and count]

    # Raw power sums (float64 is ample for weights); the centred moments follow at the end.
    s1 = s2 = s3 = s4 = 0.0
    finite = nonfinite = nans = zeros = 0
    first_nonfinite = None
    lo, hi = math.inf, -math.inf
    constant_rows = zero_rows = 0
    fingerprints: list[np.ndarray] = []
    seen = 0
    per_row = rows > 1 and row_len > 1
    sample_by_rows = rows <= row_len
    keep_sample = per_row and (sample_by_rows or rows <= MAX_SAMPLED_COLUMN)
    line_step = max(1, (rows if sample_by_rows else row_len) // SAMPLE_LINES)
    sampled: list[np.ndarray] = []

    scratch = np.empty(0, np.float64)  # squares and mixed bits, reused chunk after chunk
    for chunk in chunks:
        flat = np.ascontiguousarray(chunk, dtype=np.float64).reshape(-1)
        mixed = None
        if scratch.size < flat.size:
            scratch, spare = np.empty(flat.size, np.float64), np.empty(flat.size, np.uint64)
        total = float(flat.sum())
        if math.isfinite(total):  # a finite sum means every value is finite: no mask needed
            values = flat
        else:
            mask = np.isfinite(flat)
            n_bad = flat.size - int(np.count_nonzero(mask))
            if n_bad and first_nonfinite is None:
                first_nonfinite = seen + int(np.argmin(mask))
            nonfinite += n_bad
            nans += int(np.isnan(flat).sum())
            values = flat[mask] if n_bad else flat
            total = float(values.sum())
        if values.size:
            # einsum, not np.dot: BLAS would wake its thread pool for every chunk.
            s1 += total
            s2 += float(np.einsum("i,i->", values, values))
            sq = np.multiply(values, values, out=scratch[: values.size])
            s3 += float(np.einsum("i,i->", sq, values))
            s4 += float(np.einsum("i,i->", sq, sq))
            zeros += int(values.size - np.count_nonzero(values))
        finite += values.size
        if per_row and flat.size % row_len == 0:
            block = flat.reshape(-1, row_len)
            row_min, row_max = block.min(axis=1), block.max(axis=1)
            if values is flat:
                lo, hi = min(lo, float(row_min.min())), max(hi, float(row_max.max()))
            elif values.size:
                lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
            constant = row_min == row_max
            constant_rows += int(constant.sum())
            zero_row = constant & (row_min == 0)
            zero_rows += int(zero_row.sum())
            # Exact identity of rows, by an integer fingerprint of their bits (all-zero rows are
            # dead units or dirac/eye padding, a different matter: never duplicates).
            mixed = _mixed_bits(flat, out=scratch[: flat.size].view(np.uint64), spare=spare[: flat.size])
            fingerprint = np.einsum("ij,j->i", mixed.reshape(block.shape), _multipliers(row_len))
            fingerprint[zero_row] = 0
            fingerprints.append(fingerprint)
            if keep_sample:
                if sample_by_rows:
                    index = np.arange(seen // row_len, seen // row_len + block.shape[0])
                    picked = (index % line_step == 0) & (index // line_step < SAMPLE_LINES)
                    sampled.append(block[picked].copy())
                else:
                    sampled.append(block[:, ::line_step][:, :SAMPLE_LINES].copy())
        elif values.size:
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
        if axes and not nonfinite and flat.size % max(row_len, 1) == 0:
            for unit_axis in axes:
                unit_axis.add(flat, mixed)
        elif axes:
            axes = []  # not whole rows, or non-finite values: stats_along takes its own pass
        seen += flat.size

    if finite:
        mean = s1 / finite
        m2 = max(s2 / finite - mean * mean, 0.0)
        # Products, not mean**4: Python's ** raises OverflowError where * gives inf (1e300 weights).
        m4 = s4 / finite - 4 * mean * s3 / finite + 6 * mean * mean * s2 / finite - 3 * (mean * mean) * (mean * mean)
        kurt = m4 / (m2 * m2) - 3.0 if m2 > 0 else 0.0
        mean_sq = s2 / finite
        if not math.isfinite(m2):
            # The power sums overflowed (|w| beyond ~1e154): inf - inf is NaN. Equal values
            # still have no spread; unequal ones spread beyond float64.
            m2 = 0.0 if lo == hi else math.inf
        if not math.isfinite(kurt):
            kurt = 0.0  # no shape can be read from overflowed moments
    else:
        mean = m2 = kurt = mean_sq = 0.0
        lo = hi = math.nan
    if rows == 1 and count:
        constant_rows = int(lo == hi and not nonfinite)
        zero_rows = int(zeros == count)

    stats = TensorStats(
        count=count,
        finite_count=finite,
        mean=mean,
        var=m2,
        mean_sq=mean_sq,
        excess_kurtosis=kurt,
        min=lo,
        max=hi,
        nonfinite_count=nonfinite,
        first_nonfinite=first_nonfinite,
        nan_count=nans,
        zero_count=zeros,
        rows=rows,
        constant_rows=constant_rows,
        zero_rows=zero_rows,
    )
    if fingerprints and not nonfinite:
        groups = _duplicate_groups(fingerprints)
        stats.duplicate_rows = sum(len(g) - 1 for g in groups)
        stats.duplicate_row_groups = groups[:5]
    if not nonfinite:
        stats.along = {unit_axis.axis: unit_axis.stats(stats) for unit_axis in axes}
        if sampled:
            lines = np.concatenate(sampled, axis=0)
            stats.sample_lines = lines if sample_by_rows else np.ascontiguousarray(lines.T)
    return stats
