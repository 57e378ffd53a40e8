"""Init fingerprinting (docs/science.md §7): a measured confusion table over real torch inits."""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest

from initlint.fingerprint import fingerprint, schemes_for
from initlint.graph import Layer, Tensor

torch = pytest.importorskip("torch")
nn = torch.nn

_TRUNC = 0.8796256610342398  # std of N(0, 1) truncated at ±2: Keras scales by 1/_TRUNC


def _keras_truncated(w, var):
    std = math.sqrt(var) / _TRUNC
    return nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


def _fans(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


INITS = {
    "glorot_uniform": nn.init.xavier_uniform_,
    "glorot_normal": nn.init.xavier_normal_,
    "he_normal_fan_in": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "he_uniform_fan_in": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "he_normal_fan_out": lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
    "he_uniform_fan_out": lambda w: nn.init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu"),
    "lecun_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="linear"),
    "pytorch_default": lambda w: nn.init.kaiming_uniform_(w, a=math.sqrt(5)),
    "normal_0.02": lambda w: nn.init.normal_(w, std=0.02),
    "standard_normal": nn.init.normal_,
    "orthogonal": nn.init.orthogonal_,
    "he_truncated_normal_fan_in": lambda w: _keras_truncated(w, 2.0 / _fans(tuple(w.shape))[0]),
    "glorot_truncated_normal": lambda w: _keras_truncated(w, 2.0 / sum(_fans(tuple(w.shape)))),
}
LARGE = [(256, 256), (512, 128), (64, 64, 3, 3)]
SMALL = [(16, 16), (10, 16), (64, 3, 3, 3)]
SEEDS = range(4)


def _layer(values: np.ndarray, name: str = "w") -> Layer:
    shape = values.shape
    fan_in, fan_out = _fans(shape)
    tensor = Tensor(name, shape, "float32", lambda v=values: v)
    return Layer(name=name, kind="linear" if len(shape) == 2 else "conv", op="test", params={"weight": tensor}, fan_in=fan_in, fan_out=fan_out)


def _fingerprint_of(init_name: str, shape, seed: int):
    torch.manual_seed(seed)
    w = torch.empty(shape)
    INITS[init_name](w)
    return fingerprint(_layer(w.numpy()))


def _table(shapes):
    """(scheme, shape) -> Counter of "right" (identified, truth in set), "ambiguous" (truth in set), "missed", "wrong"."""
    table = {}
    for shape in shapes:
        for name in INITS:
            counts = collections.Counter()
            for seed in SEEDS:
                fp = _fingerprint_of(name, shape, seed)
                truth_in = name in fp.names or (name == "orthogonal" and fp.has("orthogonal"))
                if fp.status == "identified":
                    counts["right" if truth_in else "wrong"] += 1
                elif fp.status == "ambiguous":
                    counts["ambiguous" if truth_in else "wrong"] += 1
                else:
                    counts["missed"] += 1
            table[(name, shape)] = counts
    return table


def test_confusion_table_large_layers_identify_every_scheme():
    table = _table(LARGE)
    wrong = {k: v for k, v in table.items() if v["wrong"] or v["missed"]}
    assert not wrong, f"misidentified or missed on large layers: {wrong}"
    # Up to equivalence: square layers make Xavier ≡ LeCun, so "ambiguous" must not appear there.
    for (name, shape), counts in table.items():
        assert counts["right"] + counts["ambiguous"] == len(SEEDS)
    identified = sum(c["right"] for c in table.values()) / sum(sum(c.values()) for c in table.values())
    assert identified >= 0.9, f"only {identified:.0%} identified outright on large layers"


def test_confusion_table_small_layers_degrade_to_ambiguous_never_wrong():
    table = _table(SMALL)
    wrong = {k: dict(v) for k, v in table.items() if v["wrong"]}
    assert not wrong, f"a confident wrong answer on a small layer: {wrong}"
    ambiguous = sum(c["ambiguous"] for c in table.values())
    assert ambiguous > 0, "fan-in 16 layers should leave some schemes ambiguous"


def test_square_glorot_reports_the_equivalent_set():
    fp = _fingerprint_of("glorot_normal", (256, 256), 0)
    assert fp.status == "identified"
    assert {"glorot_normal", "lecun_normal"} <= set(fp.names)
    assert "equivalent here" in fp.describe()


def test_glorot_and_he_fan_out_on_a_stem_conv_are_reported_together():
    # docs/science.md §7: at 64×3×3×3 Xavier and He fan_out differ by only 4.7% in variance.
    fp = _fingerprint_of("glorot_normal", (64, 3, 3, 3), 1)
    assert fp.status == "ambiguous"
    assert {"glorot_normal", "he_normal_fan_out"} <= set(fp.names)


def test_describe_names_scheme_and_closeness():
    fp = _fingerprint_of("he_uniform_fan_in", (256, 512), 0)
    assert fp.best.name == "he_uniform_fan_in"
    assert fp.describe().startswith("he_uniform_fan_in, variance within")


def test_trained_looking_weights_are_unrecognized():
    rng = np.random.default_rng(0)
    # Heavy-tailed and at no scheme's scale, as trained weights are.
    trained = (rng.standard_t(3, size=(256, 256)) * 0.031).astype(np.float32)
    fp = fingerprint(_layer(trained))
    assert fp.status == "unrecognized"
    assert fp.describe().startswith("unrecognized, std=")


def test_orthogonal_with_gain_is_identified_by_structure():
    torch.manual_seed(0)
    w = torch.empty(128, 256)
    nn.init.orthogonal_(w, gain=math.sqrt(2))
    fp = fingerprint(_layer(w.numpy()))
    assert fp.status == "identified" and fp.best.name.startswith("orthogonal_gain_1.41")


def test_candidate_variances_follow_design_table():
    schemes = {s.name: s.var for s in schemes_for(fan_in=300, fan_out=100, rows=100, cols=300)}
    assert schemes["glorot_uniform"] == pytest.approx(2 / 400)
    assert schemes["he_normal_fan_out"] == pytest.approx(2 / 100)
    assert schemes["pytorch_default"] == pytest.approx(1 / 900)
    assert schemes["orthogonal"] == pytest.approx(1 / 300)


def test_unrecognized_layers_are_noted_in_the_signal_report():
    from initlint.graph import ModelGraph
    from initlint.signal import signal_of

    rng = np.random.default_rng(1)
    graph = ModelGraph(target="trained.onnx", format="onnx")
    graph.add(_layer((rng.standard_t(3, size=(64, 64)) * 0.05).astype(np.float32), "fc"))
    notes = " ".join(signal_of(graph).notes)
    assert "match no init scheme" in notes and "IL201" in notes


def test_orthogonality_is_read_from_the_statistics_pass_for_wide_and_tall_matrices():
    import numpy as np

    from initlint.fingerprint import is_orthogonal
    from initlint.graph import Tensor

    rng = np.random.default_rng(0)
    for rows, cols in ((48, 300), (300, 48)):
        q, _ = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
        ortho = (q if rows > cols else q.T).astype(np.float32) * 0.7
        reads = []
        tensor = Tensor("w", ortho.shape, "float32", lambda ortho=ortho: reads.append(1) or ortho)
        assert is_orthogonal(tensor) and len(reads) == 1
        gaussian = rng.standard_normal((rows, cols)).astype(np.float32)
        assert not is_orthogonal(Tensor("g", gaussian.shape, "float32", lambda g=gaussian: g))
