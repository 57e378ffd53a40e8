"""Draw the probe's per-layer signal: where the forward signal and the gradient die or blow up.

One figure per target: the forward signal (second moment of each weighted layer's output less
its bias, relative to the first layer) and the backward signal (norm of the loss gradient at
each layer's output, relative to the last layer) on a log scale, the probe's thresholds as
dashed lines, and the static rules' predictions as hollow markers beside the measurement.
"""

from __future__ import annotations

from pathlib import Path

from .measurement import EXPLODING_VARIANCE, VANISHING_VARIANCE

GRADIENT_BOUNDS = (1e-3, 70.0)  # docs/science.md §8, as in IL401/IL402


def _positive(values):
    return [(i, v) for i, v in enumerate(values) if v is not None and v > 0]


def plot_probe(probe: dict, findings, path: str, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    rows = probe.get("layers") or []
    if not rows:
        raise ValueError("the probe measured no layer to plot")
    names = [row["layer"] for row in rows]
    forward = _positive([row.get("forward_ratio") for row in rows])
    backward = _positive([row.get("backward_ratio") for row in rows])
    fig, ax = plt.subplots(figsize=(max(6.0, min(16.0, 0.35 * len(rows) + 3)), 4.5), dpi=110)
    if forward:
        ax.plot(*zip(*forward), "o-", color="tab:blue", ms=3, label="forward signal (variance, vs first layer)")
    if backward:
        ax.plot(*zip(*backward), "s-", color="tab:red", ms=3, label="backward signal (gradient norm, vs last layer)")
    ax.axhline(GRADIENT_BOUNDS[0], color="tab:red", ls="--", lw=0.8, alpha=0.6, label="gradient bounds (1e-3, 70)")
    ax.axhline(GRADIENT_BOUNDS[1], color="tab:red", ls="--", lw=0.8, alpha=0.6)
    ax.axhline(VANISHING_VARIANCE, color="tab:blue", ls=":", lw=0.8, alpha=0.6, label="forward bounds (1e-6, 4900)")
    ax.axhline(EXPLODING_VARIANCE, color="tab:blue", ls=":", lw=0.8, alpha=0.6)
    _predictions(ax, findings, rows)
    ax.set_yscale("log")
    step = max(1, len(names) // 40)
    ax.set_xticks(range(0, len(names), step))
    ax.set_xticklabels(names[::step], rotation=70, ha="right", fontsize=7)
    ax.set_xlabel("weighted layer (execution order)")
    ax.set_ylabel("relative signal (log)")
    seeds = probe.get("seeds") or []
    ax.set_title(f"{Path(title).name or title}: probe, median of {len(seeds)} seeds", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format=out.suffix.lstrip(".").lower() or "png")
    plt.close(fig)
    return out


def _predictions(ax, findings, rows) -> None:
    """Static predictions with a layer and a predicted ratio, drawn where they apply."""
    index = {}
    for i, row in enumerate(rows):
        index[row["layer"]] = i
        if row.get("weight"):
            index[row["weight"]] = i
    labelled = set()
    for finding in findings or []:
        prediction = finding.prediction.to_json() if finding.prediction is not None else {}
        kind = {"forward_variance_ratio": "forward_ratio", "gradient_energy_ratio": "backward_ratio"}.get(prediction.get("quantity"))
        for key, colour, marker, default in (("forward_ratio", "tab:blue", "o", len(rows) - 1), ("backward_ratio", "tab:red", "s", 0)):
            at = index.get(prediction.get("to_layer"), default)
            value = prediction.get("predicted") if kind == key else None
            if isinstance(value, (int, float)) and value > 0:
                if key == "backward_ratio":
                    value = value**0.5  # predicted as a variance; the curve is an amplitude
                label = f"static prediction ({key.split('_')[0]})" if key not in labelled else None
                labelled.add(key)
                ax.plot([at], [value], marker, mfc="none", mec=colour, ms=9, mew=1.5, label=label)
