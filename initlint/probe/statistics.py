"""Numbers computed from one tensor a layer reads or writes in a probe pass: its output's
moments with and without the bias, the input-dependent variance of its input, the shares of
inactive and of duplicate units (docs/science.md §8). Shared by the torch probe
(initlint.probe.measure) and the forward-only one (initlint.probe.onnxruntime_forward), so
both compute them alike. Like the rest of the probe, it needs torch only when a probe runs.
"""

from __future__ import annotations

import math


# A unit active on fewer than this share of the batch's values (samples x positions) is rarely
# active: whatever the batch, a unit that fires with probability below 0.13% (a bias under -3σ,
# IL304) stays under it (at 256 samples, 3 or more firings have probability 0.5%).
RARELY_ACTIVE_BELOW = 0.01


def inactive_fraction(torch, value, unit_axis: int) -> dict:
    """Shares of units that are <= 0 for every sample and position (dead), and that are > 0 on
    fewer than RARELY_ACTIVE_BELOW of them (rarely active)."""
    if value.ndim < 2:
        return {}
    axis = unit_axis % value.ndim
    dims = tuple(d for d in range(value.ndim) if d != axis)
    active = (value > 0).float().mean(dim=dims)
    return {"dead_fraction": float((active == 0).float().mean()), "rarely_active_fraction": float((active < RARELY_ACTIVE_BELOW).float().mean())}


def output_stats(torch, value, module, unit_axis: int, dead_from_output: bool) -> dict:
    """Mean, std and second moment of a layer's output, with and without its bias, in cheap
    passes (a dot product and one per-unit mean; torch's var_mean costs as much as the layer).
    The bias-free second moment E[(z - b)²] = E[z²] - 2·E[b·mean_u] + E[b²] is the part of the
    forward signal that carries the input: a bias adds a constant that would hide a vanished
    signal (e.g. at a default-init head)."""
    if value.ndim < 2:
        value = value.reshape(1, -1)
    axis = unit_axis % value.ndim
    dims = tuple(d for d in range(value.ndim) if d != axis)
    flat = value.reshape(-1)
    second = float(torch.dot(flat, flat)) / max(flat.numel(), 1)
    mean_u = value.mean(dim=dims)
    mean = float(mean_u.mean())
    # Input-dependent variance: each unit's variance across the batch (and positions), averaged
    # over units. A bias or a constant carried from earlier layers carries no information.
    per_unit_second = value.square().mean(dim=dims)
    output_variance = float((per_unit_second - mean_u.square()).clamp_min(0).mean())
    stats = {"units": int(value.shape[axis]), "mean": mean, "std": math.sqrt(max(second - mean * mean, 0.0)), "second_moment": second, "weight_second_moment": second, "output_variance": output_variance}
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor) and bias.ndim == 1 and bias.shape[0] == value.shape[axis]:
        b = bias.detach().float()
        without = second - float((2 * b * mean_u - b.square()).mean())
        if without < 1e-3 * second:  # the bias dominates: subtract it exactly, not by cancellation
            shape = [1] * value.ndim
            shape[axis] = -1
            without = float((value.double() - b.double().reshape(shape)).square().mean())
        stats["weight_second_moment"] = without
    # The part of the output (less its bias) all units share: E[(mean over units)²] over the
    # units' mean second moment. A shared offset or units moving together keep it near 1.
    if value.shape[axis] > 1 and stats["weight_second_moment"] > 0 and math.isfinite(stats["weight_second_moment"]):
        common = value.mean(dim=axis, dtype=torch.float64)
        if isinstance(bias, torch.Tensor) and bias.ndim == 1 and bias.shape[0] == value.shape[axis]:
            common = common - float(bias.detach().double().mean())
        shared = float(common.square().mean())
        stats["common_component"] = min(shared / stats["weight_second_moment"], 1.0)
    if dead_from_output:
        stats.update(inactive_fraction(torch, value, unit_axis))
    return stats


def channel_variance(value, unit_axis: int) -> float | None:
    """A layer input's input-dependent variance: each channel's variance across the batch (and
    positions), averaged over channels, in one pass like ``output_stats`` (Quantity.LAYER_GAIN)."""
    if value.ndim < 2:
        return None  # no batch to vary across
    axis = unit_axis % value.ndim
    dims = tuple(d for d in range(value.ndim) if d != axis)
    mean_c = value.mean(dim=dims)
    return float((value.square().mean(dim=dims) - mean_c.square()).clamp_min(0).mean())


def activation_input(torch, inputs):
    """The computed value a layer reads: its first floating-point input that is not a parameter
    (a converted ONNX Gather or MatMul also takes its weight as an input)."""
    for value in inputs if isinstance(inputs, (tuple, list)) else (inputs,):
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not isinstance(value, torch.nn.Parameter):
            return value
    return None


def first_output(output):
    """The tensor a module call returned: the output itself, or the first of a tuple or list."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def duplicate_fraction(torch, value, unit_axis: int) -> float:
    """Share of units whose output less its mean repeats another unit's, to 5 significant digits
    of the layer's largest output: identical filters computed in a different order (a blocked
    convolution) differ in the last bits, so rows are compared within that tolerance, not hashed.

    Non-finite outputs (uninitialized memory overflows to inf) are compared as they are: two
    units repeat each other where their NaN and ±inf fall on the same samples and their finite
    outputs, less their finite mean, agree."""
    if value.ndim < 2:
        return float("nan")
    axis = unit_axis % value.ndim
    rows = value.movedim(axis, 0).reshape(value.shape[axis], -1).double()
    finite = torch.isfinite(rows)
    # 0 where finite, else a code per kind: the pattern two duplicate units share exactly.
    pattern = torch.where(finite, 0.0, torch.where(torch.isnan(rows), 1.0, torch.where(rows > 0, 2.0, 3.0)))
    kept = torch.where(finite, rows, 0.0)
    mean = kept.sum(dim=1, keepdim=True) / finite.sum(dim=1, keepdim=True).clamp_min(1)
    centered = torch.where(finite, kept - mean, 0.0)
    tolerance = 1e-5 * float(centered.abs().amax())
    # Rows within the tolerance project within tolerance·|d|₁ of each other on any direction d:
    # sorted by one random projection, only neighbours that close need the full comparison.
    direction = torch.randn(rows.shape[1], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    key = centered @ direction + pattern.double() @ direction.abs()
    window = tolerance * float(direction.abs().sum())
    order = torch.argsort(key).tolist()
    keys = key[order].tolist()
    group = list(range(rows.shape[0]))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for a, i in enumerate(order):
        for b in range(a + 1, len(order)):
            if keys[b] - keys[a] > window:
                break
            j = order[b]
            if root(i) != root(j) and torch.equal(pattern[i], pattern[j]) and float((centered[i] - centered[j]).abs().amax()) <= tolerance:
                group[root(j)] = root(i)
    distinct = len({root(i) for i in range(rows.shape[0])})
    return 1.0 - distinct / rows.shape[0]
