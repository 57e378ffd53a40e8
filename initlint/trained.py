"""The stance on trained weights (docs/science.md §7, §11).

Init-time rules predict from the mean-field model of docs/science.md §1, which assumes
independent weights drawn by an init scheme. Trained weights match no scheme and are
correlated across units: the predictions do not hold for them. So a finding of an init-time
rule (IL105, IL2xx, IL3xx) about a layer whose weights match no init scheme does not fail the
gate on the prediction alone: it is reported as info, and it regains its severity only when
the probe confirms what it predicts. Corruption (NaN/inf, uninitialized magnitudes, an
all-zero or constant layer the structure cannot rescue) is judged as always.

A model trained as a whole is fitted to its own data, and the probe feeds it synthetic inputs:
a trained speech model's output sigmoid saturates on white noise, a trained detector's ReLU
channels stay silent on it. So there a confirmation restores the severity only for what does
not depend on the inputs (frozen parameters, copied units, non-finite outputs), and the probe's
own data-dependent findings (IL401-IL403) are reported as info.
"""

from __future__ import annotations

from . import graph as g

INIT_TIME_PREFIXES = ("IL105", "IL2", "IL3")
PENDING = "severity_if_confirmed"  # evidence key: the severity the probe's confirmation restores
# Evidence key: the finding is on a model trained as a whole (see the module docstring).
ON_TRAINED_MODEL = "on_trained_model"
# Probe findings measured on synthetic inputs, which a trained model's own data is not.
DATA_DEPENDENT_PROBE_CODES = ("IL401", "IL402", "IL403")


def is_init_time(code: str) -> bool:
    return code.startswith(INIT_TIME_PREFIXES)


# Below this many values a sample's shape (kurtosis, extremes) says too little to call it trained.
MIN_VALUES = 1000
# A model-level verdict needs this many layers large enough to judge.
MIN_LAYERS = 3


def looks_trained(fp, size: int = MIN_VALUES) -> bool:
    """Weights no init scheme drew: neither the scale of a scheme nor the shape of any init
    family (uniform, truncated normal, normal, orthogonal). A custom init such as N(0, 0.1)
    keeps its family and is judged as an init."""
    return fp is not None and size >= MIN_VALUES and fp.status == "unrecognized" and not fp.families


def trained_model(ctx) -> bool:
    """The model as a whole was trained: most of its layers match no init scheme and a fair
    share of them no init family at all. Signal predictions then fail everywhere, also at the
    few layers whose trained values happen to pass for an init (each prediction carries the
    trained layers upstream of it). Normalization running statistics are no sign: exporting in
    training mode runs a forward pass that moves them."""
    cached = ctx.graph.__dict__.get("_trained_model")
    if cached is None:
        cached = _mostly_unrecognized(ctx)
        ctx.graph.__dict__["_trained_model"] = cached
    return cached


def _mostly_unrecognized(ctx) -> bool:
    fps = [ctx.fingerprint(layer) for layer in ctx.graph.layers.values() if layer.is_weighted and layer.kind != g.EMBEDDING]
    judged = [fp for fp in fps if fp is not None and fp.status != "untestable"]
    if len(judged) < MIN_LAYERS:
        return False
    unrecognized = sum(fp.status == "unrecognized" for fp in judged)
    # Across several layers small ones count too: each alone says little, together they agree.
    familyless = sum(fp.status == "unrecognized" and not fp.families for fp in judged)
    # A custom init (every layer N(0, 0.1)) is unrecognized too, but keeps its family.
    return unrecognized > len(judged) / 2 and familyless >= len(judged) / 5


def trained_layers(ctx, finding) -> list[str]:
    """The layers a finding is about whose weights match no init scheme."""
    graph = ctx.graph
    names = set()
    for layer in graph.layers.values():
        if layer.name == finding.location or any(t.name == finding.location for t in layer.params.values()):
            names.add(layer.name)
    if finding.prediction is not None:
        names |= {finding.prediction.from_layer, finding.prediction.to_layer} - {None}
    whole_model = trained_model(ctx)
    found = []
    for name in sorted(names):
        layer = graph.layers.get(name)
        if layer is None or not layer.is_weighted or layer.kind == g.EMBEDDING:
            continue
        if whole_model or looks_trained(ctx.fingerprint(layer), layer.weight.size):
            found.append(name)
    if whole_model and not found:
        found.append(finding.location)  # a norm's or a bias's finding in a trained model
    return found


def hold_unconfirmed(ctx, findings, info) -> None:
    """Findings of init-time rules on trained layers drop to ``info`` until the probe confirms them."""
    for finding in findings:
        if not is_init_time(finding.code) or finding.severity <= info:
            continue
        trained = [ctx.graph.label(name) for name in trained_layers(ctx, finding)]  # named as findings name them
        if not trained:
            continue
        finding.evidence[PENDING] = str(finding.severity)
        if trained_model(ctx):
            finding.evidence[ON_TRAINED_MODEL] = True
        finding.evidence["trained_layers"] = trained
        finding.severity = info
        finding.message += (
            f" ({trained[0]} {'is part of a trained model' if trained_model(ctx) else 'matches no init scheme'}: trained weights, for which this init-time prediction does not hold; "
            "reported as info unless the probe confirms it)"
        )


def restores_severity(finding, on_trained_model: bool) -> bool:
    """Whether the probe's confirmation of a held finding restores its severity: on a model
    trained as a whole, only for a quantity that does not depend on the inputs."""
    return not (on_trained_model and finding.prediction is not None and finding.prediction.quantity.depends_on_the_data)


def hold_probe_findings(ctx, findings, info) -> None:
    """On a model trained as a whole, the probe's data-dependent findings are info."""
    if not trained_model(ctx):
        return
    for finding in findings:
        if finding.code in DATA_DEPENDENT_PROBE_CODES and finding.severity > info:
            finding.severity = info
            finding.message += (
                " (measured on the probe's synthetic inputs; the model was trained, and its weights fit its own data, "
                "on which this may not hold: reported as info)"
            )
