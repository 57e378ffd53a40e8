"""Statistics of a weight tensor, computed in one chunked pass and shared by every rule.

Every rule that needs a number about a tensor's values reads it from :class:`TensorStats`;
none of them walks the values again. The pass works on whole rows (output units) at a time,
so per-unit facts (constant rows, duplicate rows) come out of the same pass as the moments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

# ~32 MB of float64 per chunk: large enough to amortise numpy's overhead, small enough that a
# multi-GB tensor never needs a full float64 copy.
CHUNK_ELEMENTS = 1 << 22


@dataclass
class TensorStats:
    count: int
    finite_count: int
    mean: float
    var: float  # population variance of the finite values
    mean_sq: float  # E[w^2], the "s^2" of DESIGN.md section 7
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
        """max |w - mean| / std: uniform < 1.85 < truncated normal < 2.5 < normal (DESIGN.md §7)."""
        if self.var <= 0:
            return 0.0
        return max(abs(self.max - self.mean), abs(self.min - self.mean)) / self.std


def compute_stats(shape: tuple[int, ...], chunks: Iterable[np.ndarray]) -> TensorStats:
    """One pass over ``chunks``: float arrays of whole rows, in order, flattened or 2-D."""
    count = int(np.prod(shape)) if shape else 1
    rows = shape[0] if len(shape) >= 2 else 1
    row_len = count // rows if rows else 0

    s1 = s2 = 0.0
    finite = nonfinite = nans = zeros = 0
    first_nonfinite = None
    lo, hi = math.inf, -math.inf
    constant_rows = zero_rows = 0
    row_hashes: list[int] = []
    seen = 0
    # Pass one accumulates sums; centred third and fourth moments need the mean, which we
    # only know at the end, so accumulate raw power sums (float64 is ample for weights).
    s3 = s4 = 0.0
    per_row = rows > 1 and row_len > 1

    for chunk in chunks:
        flat = np.asarray(chunk, dtype=np.float64).reshape(-1)
        mask = np.isfinite(flat)
        n_bad = flat.size - int(mask.sum())
        if n_bad:
            if first_nonfinite is None:
                first_nonfinite = seen + int(np.argmin(mask))
            nonfinite += n_bad
            nans += int(np.isnan(flat).sum())
            values = flat[mask]
        else:
            values = flat
        if values.size:
            s1 += float(values.sum())
            sq = values * values
            s2 += float(sq.sum())
            s3 += float((sq * values).sum())
            s4 += float((sq * sq).sum())
            lo = min(lo, float(values.min()))
            hi = max(hi, float(values.max()))
            zeros += int(values.size - np.count_nonzero(values))
        finite += values.size
        if per_row and flat.size % row_len == 0:
            block = flat.reshape(-1, row_len)
            row_min, row_max = block.min(axis=1), block.max(axis=1)
            constant = row_min == row_max
            constant_rows += int(constant.sum())
            zero_row = constant & (row_min == 0)
            zero_rows += int(zero_row.sum())
            # Exact identity of rows: hash their bytes (all-zero rows are dead units or
            # dirac/eye padding, a different matter, so they never count as duplicates).
            row_hashes.extend(0 if z else hash(r.tobytes()) for r, z in zip(block, zero_row))
        seen += flat.size

    if finite:
        mean = s1 / finite
        m2 = max(s2 / finite - mean * mean, 0.0)
        m4 = s4 / finite - 4 * mean * s3 / finite + 6 * mean * mean * s2 / finite - 3 * mean**4
        kurt = m4 / (m2 * m2) - 3.0 if m2 > 0 else 0.0
        mean_sq = s2 / finite
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
    if row_hashes and not nonfinite:
        groups: dict[int, list[int]] = {}
        for row, key in enumerate(row_hashes):
            if key:
                groups.setdefault(key, []).append(row)
        repeated = [g for g in groups.values() if len(g) > 1]
        stats.duplicate_rows = sum(len(g) - 1 for g in repeated)
        stats.duplicate_row_groups = repeated[:5]
    return stats
