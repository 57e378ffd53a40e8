"""One pass over each weight: per-unit statistics along any axis equal a dedicated pass, and the
rules read every weight's values exactly once."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import initlint.graph as graph_module
from initlint.engine import registry, run_rules
from initlint.graph import Tensor
from initlint.loaders.onnx import load_onnx
from initlint.stats import compute_stats


def reference_along(values: np.ndarray, axis: int):
    """The statistics with ``axis`` as the unit axis, by an explicit transposed copy."""
    moved = np.moveaxis(values, axis, 0)
    return compute_stats(moved.shape, [np.ascontiguousarray(moved, dtype=np.float64)])


def assert_same(expected, got):
    for f in dataclasses.fields(expected):
        if not f.compare:  # derived views and samples (along, sample_lines), not statistics
            continue
        want, have = getattr(expected, f.name), getattr(got, f.name)
        if isinstance(want, float):
            assert (math.isnan(want) and math.isnan(have)) or math.isclose(want, have, rel_tol=1e-9, abs_tol=1e-12), f.name
        else:
            assert want == have, (f.name, want, have)


@st.composite
def weights(draw):
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=2, max_size=4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values = rng.standard_normal(shape).astype(np.float32)
    axis = draw(st.integers(1, len(shape) - 1))
    moved = np.moveaxis(values, axis, 0)  # a view: edits land in ``values``
    for _ in range(draw(st.integers(0, 3))):  # copied, constant and zero units
        src, dst = draw(st.integers(0, shape[axis] - 1)), draw(st.integers(0, shape[axis] - 1))
        kind = draw(st.sampled_from(["copy", "constant", "zero", "negzero"]))
        moved[dst] = moved[src] if kind == "copy" else {"constant": 0.5, "zero": 0.0, "negzero": -0.0}[kind]
    if draw(st.booleans()) and draw(st.booleans()):
        values.reshape(-1)[draw(st.integers(0, values.size - 1))] = np.nan
    return values, axis, draw(st.sampled_from([1, 5, 64, 1 << 17]))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(weights())
def test_unit_statistics_from_the_shared_pass_equal_a_dedicated_pass(case):
    values, axis, chunk = case
    original = graph_module.CHUNK_ELEMENTS
    graph_module.CHUNK_ELEMENTS = chunk
    try:
        tensor = Tensor("w", values.shape, "float32", lambda: values)
        tensor.unit_axes.add(axis)
        assert_same(reference_along(values, axis), tensor.stats_along(axis))
        assert_same(reference_along(values, 0), tensor.stats)
        if not np.isnan(values).any():
            assert axis in tensor.stats.along  # no second pass was needed
    finally:
        graph_module.CHUNK_ELEMENTS = original


def test_asking_for_a_unit_axis_before_the_values_are_read_costs_one_pass():
    values = np.random.default_rng(0).standard_normal((8, 12)).astype(np.float32)
    reads = []
    tensor = Tensor("w", values.shape, "float32", lambda: reads.append(1) or values)
    tensor.stats_along(1)
    tensor.stats
    tensor.stats_along(-1)
    assert len(reads) == 1


def test_rules_read_each_weight_once(tmp_path):
    """Every rule takes its numbers from the shared statistics; none walks a weight again."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array((rng.standard_normal((16, 32)) * 0.25).astype(np.float32), "w1"),  # [in, out]
        numpy_helper.from_array((rng.standard_normal((4, 32)) * 0.2).astype(np.float32), "w2"),  # Gemm transB
        numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32), "cw"),
        numpy_helper.from_array((rng.standard_normal((8, 4, 2, 2)) * 0.2).astype(np.float32), "tw"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="act"),
        helper.make_node("Gemm", ["r", "w2"], ["y"], name="fc2", transB=1),
        helper.make_node("Conv", ["img", "cw"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["cr"], name="conv_act"),
        helper.make_node("ConvTranspose", ["cr", "tw"], ["u"], name="up"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16]), helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]), helper.make_tensor_value_info("u", TensorProto.FLOAT, None)],
        inits,
    )
    path = tmp_path / "model.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    model = load_onnx(path)
    reads = {}
    for layer in model.weighted_layers():
        weight = layer.weight
        reader = weight._reader
        weight._reader = lambda reader=reader, name=weight.name: reads.__setitem__(name, reads.get(name, 0) + 1) or reader()
    run = run_rules(model, list(registry()))
    assert not run.failures
    assert set(reads) == {"w1", "w2", "cw", "tw"}
    assert all(count == 1 for count in reads.values()), reads


@pytest.mark.parametrize("shape", [(3, 0), (0, 3), (2, 0, 4)])
def test_empty_weights_have_empty_statistics(shape):
    tensor = Tensor("w", shape, "float32", lambda: np.zeros(shape, np.float32))
    assert tensor.stats.count == 0
    assert tensor.stats_along(1).count == 0


@pytest.mark.parametrize("alphabet", [(0.0, 1.0), (-1.0, 0.0, 1.0), (0.0, 0.5, 2.0, -0.25)])
def test_duplicate_units_of_round_numbers_are_counted_exactly(alphabet):
    """One-hot and quantized rows are bit patterns with many trailing zeros: the fingerprints
    must neither merge different rows nor miss equal ones (checked against np.unique)."""
    rng = np.random.default_rng(len(alphabet))
    for rows, width in ((3000, 6), (600, 12), (256, 256)):
        values = rng.choice(np.array(alphabet, np.float32), size=(rows, width))
        if width == 256:
            values = np.eye(rows, width, dtype=np.float32) * alphabet[-1]  # one-hot rows
        nonzero = values[np.any(values != 0, axis=1)]
        expected = len(nonzero) - len(np.unique(nonzero, axis=0))
        tensor = Tensor("w", values.shape, "float32", lambda values=values: values)
        tensor.unit_axes.add(1)
        assert tensor.stats.duplicate_rows == expected
        columns = values.T[np.any(values.T != 0, axis=1)]
        assert tensor.stats_along(1).duplicate_rows == len(columns) - len(np.unique(columns, axis=0))


def test_moments_that_overflow_float64_are_never_nan():
    """Weights near the float64 limit (|w| ~ 1e300) overflow the power sums: the variance of
    equal values is still 0, that of unequal values infinite, and no moment is NaN."""
    constant = compute_stats((4, 8), [np.full((4, 8), -1e300)])
    assert constant.var == 0.0 and constant.excess_kurtosis == 0.0 and constant.mean == pytest.approx(-1e300)
    spread = np.full((4, 8), 1e300)
    spread[0, 0] = -1e300
    varied = compute_stats((4, 8), [spread])
    assert varied.var == math.inf and math.isfinite(varied.excess_kurtosis)
    assert not any(isinstance(v, float) and math.isnan(v) for v in dataclasses.asdict(varied).values())
