"""The ONNX loader on hostile and unusual files: refused paths, lying sizes, weights read in place."""

from __future__ import annotations

import mmap
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from initlint.errors import InitlintError
from initlint.loaders.onnx import build_graph, load_onnx
from initlint.runner import LintOptions, lint_target

RNG = np.random.default_rng(0)


def mlp_model(initializers: list[TensorProto] | None = None, extra_nodes=(), hidden: int = 32) -> onnx.ModelProto:
    """x[1,16] -> MatMul(w1) -> Relu -> MatMul(w2) -> y; w1/w2 replaceable by ``initializers``."""
    w1 = numpy_helper.from_array((RNG.standard_normal((16, hidden)) * 0.25).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((RNG.standard_normal((hidden, 4)) * 0.18).astype(np.float32), "w2")
    inits = initializers if initializers is not None else [w1, w2]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="act"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
        *extra_nodes,
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def external_tensor(name: str, dims, location: str, offset: int = 0, length: int | None = None) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims))
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=value)
    return tensor


def external_model(tmp_path: Path, location: str, data: bytes | None = None) -> Path:
    """w1 stored in an external file named ``location`` (written when ``data`` is given)."""
    w1 = (RNG.standard_normal((16, 32)) * 0.25).astype(np.float32)
    if data is None:
        data = w1.tobytes()
    if location and not os.path.isabs(location) and ".." not in location:
        (tmp_path / location).write_bytes(data)
    w2 = numpy_helper.from_array((RNG.standard_normal((32, 4)) * 0.18).astype(np.float32), "w2")
    return save(mlp_model([external_tensor("w1", (16, 32), location, length=w1.nbytes), w2]), tmp_path / "model.onnx")


def backed_by_file_map(array: np.ndarray) -> bool:
    """True when ``array`` is a view on a memory-mapped file, not a copy of its bytes."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def load_error(path: Path) -> str:
    with pytest.raises(InitlintError) as info:
        load_onnx(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


# --- external data: only files inside the model's directory -----------------------------------


def test_external_data_inside_the_model_directory_is_memory_mapped(tmp_path):
    graph = load_onnx(external_model(tmp_path, "weights.bin"))
    w1 = graph.tensors["w1"]
    values = w1.values()
    assert values.shape == (16, 32)
    assert backed_by_file_map(values)
    expected = np.frombuffer((tmp_path / "weights.bin").read_bytes(), np.float32).reshape(16, 32)
    np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize("location", ["/etc/passwd", "../weights.bin", "sub/../../weights.bin", ""])
def test_external_data_outside_the_directory_is_refused(tmp_path, location):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (tmp_path / "weights.bin").write_bytes(b"\0" * 2048)
    message = load_error(external_model(model_dir, location))
    assert "refused" in message


def test_external_data_symlink_pointing_outside_is_refused(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\1" * 2048)
    (model_dir / "weights.bin").symlink_to(secret)
    path = save(mlp_model([external_tensor("w1", (16, 32), "weights.bin", length=2048)]), model_dir / "model.onnx")
    assert "resolves outside the model's directory" in load_error(path)


def test_external_data_symlinked_directory_pointing_outside_is_refused(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "weights.bin").write_bytes(b"\1" * 2048)
    (model_dir / "data").symlink_to(tmp_path / "elsewhere")
    path = save(mlp_model([external_tensor("w1", (16, 32), "data/weights.bin", length=2048)]), model_dir / "model.onnx")
    assert "resolves outside" in load_error(path)


def test_external_data_symlink_inside_the_directory_is_allowed(tmp_path):
    (tmp_path / "real.bin").write_bytes(np.ones((16, 32), np.float32).tobytes())
    (tmp_path / "weights.bin").symlink_to(tmp_path / "real.bin")
    path = save(mlp_model([external_tensor("w1", (16, 32), "weights.bin")]), tmp_path / "model.onnx")
    assert load_onnx(path).tensors["w1"].stats.mean == 1.0


def test_external_data_symlink_loop_is_an_error(tmp_path):
    (tmp_path / "a.bin").symlink_to(tmp_path / "b.bin")
    (tmp_path / "b.bin").symlink_to(tmp_path / "a.bin")
    path = save(mlp_model([external_tensor("w1", (16, 32), "a.bin")]), tmp_path / "model.onnx")
    load_error(path)


def test_external_data_location_with_nul_byte_is_refused(tmp_path):
    path = save(mlp_model([external_tensor("w1", (16, 32), "w\0.bin")]), tmp_path / "model.onnx")
    assert "refused" in load_error(path)


@pytest.mark.parametrize(
    "offset, length, data_bytes",
    [(0, 2048, 100), (4096, 2048, 2048), (0, 1 << 50, 2048), (-8, 2048, 4096), (0, 1000, 2048)],
)
def test_external_data_shorter_than_declared_is_an_error(tmp_path, offset, length, data_bytes):
    (tmp_path / "weights.bin").write_bytes(b"\0" * data_bytes)
    path = save(mlp_model([external_tensor("w1", (16, 32), "weights.bin", offset, length)]), tmp_path / "model.onnx")
    assert "declares" in load_error(path)


def test_external_data_missing_file_is_an_error(tmp_path):
    path = save(mlp_model([external_tensor("w1", (16, 32), "gone.bin")]), tmp_path / "model.onnx")
    assert "missing" in load_error(path)


# --- declared sizes are checked against the bytes present, before any allocation -------------


def test_tiny_file_claiming_a_trillion_elements_is_an_error_not_an_allocation(tmp_path):
    huge = TensorProto(name="w1", data_type=TensorProto.FLOAT, dims=[1_000_000, 1_000_000], raw_data=b"\0" * 4)
    path = save(mlp_model([huge]), tmp_path / "model.onnx")
    assert path.stat().st_size < 400
    message = load_error(path)
    assert "1,000,000,000,000 elements" in message and "holds 4 bytes" in message


def test_typed_field_shorter_than_declared_is_an_error(tmp_path):
    tensor = TensorProto(name="w1", data_type=TensorProto.FLOAT, dims=[16, 32], float_data=[0.5] * 10)
    assert "holds 10 values" in load_error(save(mlp_model([tensor]), tmp_path / "model.onnx"))


def test_dims_whose_int64_product_wraps_to_the_real_size_are_an_error(tmp_path):
    # 2**62 * 4 * 4 wraps to 0 in int64: an exact product must still see 2**66 elements.
    tensor = TensorProto(name="w1", data_type=TensorProto.FLOAT, dims=[2**62, 4, 4], raw_data=b"")
    assert "declares" in load_error(save(mlp_model([tensor]), tmp_path / "model.onnx"))


def test_tensor_with_too_many_dimensions_is_an_error(tmp_path):
    tensor = TensorProto(name="w1", data_type=TensorProto.FLOAT, dims=[1] * 70, raw_data=b"\0" * 4)
    assert "70 dimensions" in load_error(save(mlp_model([tensor]), tmp_path / "model.onnx"))


def test_huge_constant_of_shape_is_an_error(tmp_path):
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20], np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["filled"], name="fill"), helper.make_node("MatMul", ["x", "filled"], ["z"], name="mm")]
    model = mlp_model(extra_nodes=nodes)
    model.graph.initializer.append(shape)
    assert "huge shape" in load_error(save(model, tmp_path / "model.onnx"))


def test_non_numeric_initializers_are_skipped_with_a_note(tmp_path):
    model = mlp_model()
    model.graph.initializer.append(helper.make_tensor("labels", TensorProto.STRING, [2], [b"cat", b"dog"]))
    graph = load_onnx(save(model, tmp_path / "model.onnx"))
    assert "labels" not in graph.tensors and "w1" in graph.tensors
    assert any("STRING" in note for note in graph.notes)


def test_malformed_attributes_do_not_crash(tmp_path):
    conv_w = numpy_helper.from_array((RNG.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float32), "cw")
    nodes = [
        helper.make_node("Reshape", ["x", "w1"], ["bad_reshape"], name="reshape_by_float"),
        helper.make_node("Transpose", ["w2"], ["w2t"], name="bad_perm", perm=[0, 0]),
        helper.make_node("Conv", ["img", "cw"], ["c"], name="conv", group="two"),
        helper.make_node("Gather", ["w1"], ["g"], name="gather_one_input"),
        helper.make_node("LeakyRelu", ["c"], ["l"], name="leaky", alpha="steep"),
        helper.make_node("Constant", [], ["k"], name="k", value_float="x"),
    ]
    model = mlp_model(extra_nodes=nodes)
    model.graph.initializer.append(conv_w)
    graph = load_onnx(save(model, tmp_path / "model.onnx"))
    assert graph.layers["conv"].attrs["groups"] == 1
    assert graph.layers["leaky"].attrs["alpha"] == 0.01


def test_node_named_like_an_output_layer_does_not_collide(tmp_path):
    model = mlp_model()
    model.graph.node[2].name = "output:y"
    graph = load_onnx(save(model, tmp_path / "model.onnx"))
    assert any(layer.op == "output" for layer in graph.layers.values())


@pytest.mark.parametrize("content, cause", [(b"", "empty file"), (b"\x08\x07garbage\xff\xff", "not"), (b"\x0a\x05hello", "not")])
def test_unreadable_files_are_one_line_errors(tmp_path, content, cause):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    assert cause in load_error(path)


def test_large_non_protobuf_file_is_refused_without_being_read_into_memory(tmp_path):
    path = tmp_path / "model.onnx"
    with open(path, "wb") as handle:  # a sparse 2 GB file of zeros: field number 0 at byte 0
        handle.truncate(2 << 30)
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert "malformed protobuf: field number 0 at byte 0" in load_error(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start < 200_000  # KB


def test_truncated_model_is_a_malformed_protobuf(tmp_path):
    data = mlp_model().SerializeToString()
    path = tmp_path / "model.onnx"
    path.write_bytes(data[: len(data) // 2])
    assert "malformed protobuf" in load_error(path)


def test_directory_named_like_a_model_is_an_error(tmp_path):
    (tmp_path / "model.onnx").mkdir()
    assert "not a regular file" in load_error(tmp_path / "model.onnx")


# --- weights read once, in place ----------------------------------------------------------------


def test_raw_data_is_a_view_on_the_file_and_matches_onnx_load(tmp_path):
    path = save(mlp_model(), tmp_path / "model.onnx")
    mapped = load_onnx(path)
    parsed = build_graph(onnx.load(str(path)), path)
    assert set(mapped.tensors) == set(parsed.tensors) == {"w1", "w2"}
    for name in mapped.tensors:
        values = mapped.tensors[name].values()
        assert backed_by_file_map(values)
        assert not backed_by_file_map(parsed.tensors[name].values())
        np.testing.assert_array_equal(values, parsed.tensors[name].values())
        assert mapped.tensors[name].stats == parsed.tensors[name].stats
    assert list(mapped.layers) == list(parsed.layers)


def test_model_with_two_graph_fields_falls_back_to_onnx_load(tmp_path):
    # Protobuf merges repeated message fields; the structure reader leaves such files to onnx.load.
    model = mlp_model()
    data = model.SerializeToString()
    extra = onnx.ModelProto(graph=onnx.GraphProto(doc_string="second")).SerializeToString()
    path = tmp_path / "model.onnx"
    path.write_bytes(data + extra)
    graph = load_onnx(path)
    assert {"w1", "w2"} <= set(graph.tensors)


def bf16_bits(values: np.ndarray) -> np.ndarray:
    return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def test_bfloat16_is_converted_chunk_by_chunk(tmp_path, monkeypatch):
    import initlint.graph as graph_module

    monkeypatch.setattr(graph_module, "CHUNK_ELEMENTS", 64)
    values = (RNG.standard_normal((16, 32)) * 0.25).astype(np.float32)
    tensor = TensorProto(name="w1", data_type=TensorProto.BFLOAT16, dims=[16, 32], raw_data=bf16_bits(values).tobytes())
    graph = load_onnx(save(mlp_model([tensor]), tmp_path / "model.onnx"))
    w1 = graph.tensors["w1"]
    assert w1.dtype == "bfloat16"
    sizes = []
    convert = w1._convert
    w1._convert = lambda part: sizes.append(part.size) or convert(part)
    expected = bf16_bits(values).astype(np.uint32) << 16
    assert w1.stats.mean == pytest.approx(float(expected.view(np.float32).astype(np.float64).mean()))
    assert sizes and max(sizes) <= 64 and sum(sizes) == 16 * 32
    sizes.clear()
    assert w1.stats_along(1).rows == 32 and sizes == []  # the MatMul's unit axis came from the same pass


def test_float16_typed_field_and_bfloat16_typed_field_read_back(tmp_path):
    values = np.array([[0.5, -1.25], [2.0, 0.0]], np.float32)
    fp16 = TensorProto(name="h", data_type=TensorProto.FLOAT16, dims=[2, 2])
    fp16.int32_data.extend(values.astype(np.float16).view(np.uint16).astype(np.int32).reshape(-1).tolist())
    bf16 = TensorProto(name="b", data_type=TensorProto.BFLOAT16, dims=[2, 2])
    bf16.int32_data.extend(bf16_bits(values).astype(np.int32).reshape(-1).tolist())
    model = mlp_model()
    model.graph.initializer.extend([fp16, bf16])
    graph = load_onnx(save(model, tmp_path / "model.onnx"))
    np.testing.assert_array_equal(graph.tensors["h"].values().astype(np.float32), values)
    np.testing.assert_array_equal(graph.tensors["b"].values(), values)


def test_mapped_pages_are_released_after_the_statistics_pass(tmp_path, monkeypatch):
    path = external_model(tmp_path, "weights.bin")
    graph = load_onnx(path)
    released = []
    w1 = graph.tensors["w1"]
    inner = w1._release
    w1._release = lambda start, stop: released.append((start, stop)) or inner(start, stop)
    _ = w1.stats
    assert released and released[0][0] == 0 and released[-1][1] == 16 * 32


# --- fast start: the ONNX static path never imports torch or onnxruntime ------------------------


def test_onnx_static_path_imports_neither_torch_nor_onnxruntime(tmp_path):
    path = save(mlp_model(), tmp_path / "model.onnx")
    code = (
        "import sys; from initlint.cli import main\n"
        f"sys.argv = ['initlint', {str(path)!r}, '--probe', 'never']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime', 'onnxscript', 'onnx2torch', 'transformers'))\n"
        "print('HEAVY', heavy, 'EXIT', code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY [] EXIT 0" in out.stdout, out.stdout + out.stderr


def test_lint_target_reports_hostile_external_data_as_one_line(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    result = lint_target(str(external_model(model_dir, "../../etc/passwd")), LintOptions(probe="never"))
    assert result.error and "refused" in result.error and result.findings == []


def test_torch_export_reads_the_same_through_the_structure_walk(tmp_path):
    """A real exporter's file: the in-place reader and onnx.load give the same graph and numbers."""
    torch = pytest.importorskip("torch")
    from initlint.testing import export_onnx

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10)
    )
    path = tmp_path / "model.onnx"
    export_onnx(model, torch.randn(2, 3, 8, 8), path)
    mapped, parsed = load_onnx(path), build_graph(onnx.load(str(path)), path)
    assert list(mapped.layers) == list(parsed.layers) and set(mapped.tensors) == set(parsed.tensors)
    assert len(mapped.weighted_layers()) == 2
    for name, tensor in mapped.tensors.items():
        assert tensor.stats == parsed.tensors[name].stats, name
