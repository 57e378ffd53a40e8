"""The prediction contract: what each quantity is about, how it is judged, and what a rule may not build."""

from __future__ import annotations

import math

import numpy as np
import pytest

from initlint import graph as g
from initlint.graph import Layer, ModelGraph, Tensor
from initlint.prediction import Claim, Prediction, PredictionError, Quantity


def _graph() -> ModelGraph:
    """An embedding, then a linear layer: the only layer kinds the checks below tell apart."""
    def weight(name, shape):
        return Tensor(name, shape, "float32", lambda: np.ones(shape, np.float32))

    graph = ModelGraph(target="two.onnx", format="onnx")
    graph.add(Layer("embed", g.EMBEDDING, "Gather", params={"weight": weight("embed.weight", (10, 8))}))
    graph.add(Layer("fc", g.LINEAR, "Gemm", inputs=["embed"], params={"weight": weight("fc.weight", (4, 8))}))
    graph.add(Layer("relu", g.ACTIVATION, "Relu", inputs=["fc"], attrs={"activation": "relu"}))
    return graph


def test_a_layer_gain_is_about_one_layer_and_judged_in_decades():
    gain = Prediction(Quantity.LAYER_GAIN, Claim.ABOVE, 10.0, to_layer="fc", predicted=64.0)
    assert gain.from_layer == "fc" and Quantity.LAYER_GAIN.log_scale and not Quantity.LAYER_GAIN.spans_two_layers
    assert gain.margin(100.0) == pytest.approx(1.0) and gain.margin(1.0) == pytest.approx(-1.0)
    assert gain.margin(0.0) == -math.inf  # no signal out of it: as far from "above" as can be
    assert gain.describe() == "layer gain at fc above 10"
    assert gain.to_json() == {"quantity": "layer_gain", "claim": "above", "threshold": 10.0, "from_layer": "fc", "to_layer": "fc", "predicted": 64.0}
    gain.validate(_graph())


@pytest.mark.parametrize("build, message", [
    (lambda: Prediction(Quantity.LAYER_GAIN, Claim.ABOVE, 10.0), "about one weighted layer"),
    (lambda: Prediction(Quantity.LAYER_GAIN, Claim.ABOVE, 10.0, from_layer="embed", to_layer="fc"), "about one weighted layer"),
    (lambda: Prediction(Quantity.LAYER_GAIN, Claim.BELOW, 0.0, to_layer="fc"), "threshold must be positive"),
    (lambda: Prediction(Quantity.LAYER_GAIN, Claim.BELOW, -1.0, to_layer="fc"), "threshold must be positive"),
    (lambda: Prediction(Quantity.FORWARD_VARIANCE_RATIO, Claim.BELOW, 1e-3, to_layer="fc"), "spans two different weighted layers"),
    (lambda: Prediction(Quantity.FORWARD_VARIANCE_RATIO, Claim.BELOW, 0.0, from_layer="embed", to_layer="fc"), "threshold must be positive"),
])
def test_a_malformed_prediction_is_refused(build, message):
    with pytest.raises(PredictionError, match=message):
        build()


@pytest.mark.parametrize("layer, message", [
    ("embed", "linear or convolution layer only"),  # an embedding reads indices: no input variance
    ("relu", "weighted layers only"),
    ("nowhere", "not a layer of the graph"),
])
def test_a_layer_gain_the_probe_cannot_measure_is_refused(layer, message):
    with pytest.raises(PredictionError, match=message):
        Prediction(Quantity.LAYER_GAIN, Claim.ABOVE, 10.0, to_layer=layer).validate(_graph())


def test_ratios_over_a_span_are_described_by_both_ends():
    ratio = Prediction(Quantity.FORWARD_VARIANCE_RATIO, Claim.BELOW, 1e-3, from_layer="embed", to_layer="fc")
    assert ratio.describe() == "forward variance ratio from embed to fc below 0.001"
    assert ratio.margin(1e-5) == pytest.approx(2.0)
