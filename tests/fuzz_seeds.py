"""Seed models shared by the fuzz tests (a module, so the harnesses do not import each other):
small real ONNX models built with onnx.helper, which the fuzzers mutate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def onnx_mlp_bytes() -> bytes:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Tanh", ["h"], ["t"], name="act"),
        helper.make_node("Gemm", ["t", "w2"], ["y"], name="fc2", transB=1),
    ]
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 4)) * 0.5).astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
        numpy_helper.from_array((rng.standard_normal((2, 8)) * 0.35).astype(np.float32), "w2"),
    ]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _weights(shape, scale=0.2, seed_=0, dtype=np.float32):
    return (np.random.default_rng(seed_).standard_normal(shape) * scale).astype(dtype)


def _model(nodes, inputs, outputs, initializers, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "seed", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def seed_mlp() -> onnx.ModelProto:
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="fc1_bias"),
        helper.make_node("Relu", ["hb"], ["r"], name="act1"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["g"], name="fc2", transB=1),
        helper.make_node("Tanh", ["g"], ["t"], name="act2"),
        helper.make_node("MatMul", ["t", "w3"], ["y"], name="fc3"),
    ]
    inits = [
        numpy_helper.from_array(_weights((16, 32), 0.35), "w1"),
        numpy_helper.from_array(np.zeros(32, np.float32), "b1"),
        numpy_helper.from_array(_weights((24, 32), 0.25, 1), "w2"),
        numpy_helper.from_array(_weights((24,), 0.01, 2), "b2"),
        numpy_helper.from_array(_weights((24, 4), 0.2, 3), "w3"),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], inits)


def seed_cnn() -> onnx.ModelProto:
    bn_scale = TensorProto(name="bn_scale", data_type=TensorProto.FLOAT, dims=[8], float_data=[1.0] * 8)  # typed field
    bn_bias = numpy_helper.from_array(np.zeros(8, np.float16), "bn_bias")
    nodes = [
        helper.make_node("Conv", ["img", "cw", "cb"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("ConvTranspose", ["r", "tw"], ["u"], name="up", strides=[2, 2]),
        helper.make_node("LeakyRelu", ["u"], ["lu"], name="leaky", alpha=0.1),
        helper.make_node("GlobalAveragePool", ["lu"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["z"], name="head", transB=1),
        helper.make_node("Softmax", ["z"], ["y"], name="softmax"),
    ]
    inits = [
        numpy_helper.from_array(_weights((8, 3, 3, 3), 0.27), "cw"),
        numpy_helper.from_array(np.zeros(8, np.float32), "cb"),
        bn_scale,
        bn_bias,
        numpy_helper.from_array(np.zeros(8, np.float32), "bn_mean"),
        numpy_helper.from_array(np.ones(8, np.float32), "bn_var"),
        numpy_helper.from_array(_weights((8, 4, 2, 2), 0.3, 4, np.float16), "tw"),
        numpy_helper.from_array(_weights((10, 4), 0.5, 5), "fw"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fb"),
    ]
    return _model(nodes, [helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 8, 8])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)


def seed_misc() -> onnx.ModelProto:
    bits = (_weights((12, 6), 0.4, 6).view(np.uint32) >> 16).astype(np.uint16)
    bf16 = TensorProto(name="wb", data_type=TensorProto.BFLOAT16, dims=[6, 12], raw_data=bits.tobytes())
    then_graph = helper.make_graph([helper.make_node("Relu", ["e"], ["then_out"])], "then", [], [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, None)])
    else_graph = helper.make_graph([helper.make_node("Sigmoid", ["e"], ["else_out"])], "else", [], [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, None)])
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], name="embed"),
        helper.make_node("Constant", [], ["cond"], name="cond", value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
        helper.make_node("If", ["cond"], ["branch"], name="branch", then_branch=then_graph, else_branch=else_graph),
        helper.make_node("Constant", [], ["shape"], name="shape", value_ints=[12, 6]),
        helper.make_node("Reshape", ["wb", "shape"], ["wb_r"], name="reshape_w"),
        helper.make_node("Transpose", ["wb_r"], ["wb_t"], name="transpose_w", perm=[1, 0]),
        helper.make_node("MatMul", ["branch", "wb_t"], ["m"], name="proj"),
        helper.make_node("Constant", [], ["fill_shape"], name="fill_shape", value=numpy_helper.from_array(np.array([6, 6], np.int64))),
        helper.make_node("ConstantOfShape", ["fill_shape"], ["zeros"], name="zeros", value=numpy_helper.from_array(np.array([0.0], np.float32))),
        helper.make_node("Identity", ["zeros"], ["zeros_alias"], name="alias"),
        helper.make_node("Clip", ["m", "lo", "hi"], ["clipped"], name="relu6"),
        helper.make_node("LSTM", ["seq", "lw", "lr", "lb"], ["lstm_y"], name="lstm", hidden_size=4),
        helper.make_node("Concat", ["clipped", "clipped"], ["cat"], name="cat", axis=-1),
        helper.make_node("Mul", ["cat", "cat"], ["y"], name="gate"),
    ]
    inits = [
        numpy_helper.from_array(_weights((50, 12), 1.0, 7), "emb"),
        bf16,
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
        numpy_helper.from_array(_weights((1, 16, 5), 0.3, 8), "lw"),
        numpy_helper.from_array(_weights((1, 16, 4), 0.3, 9), "lr"),
        numpy_helper.from_array(np.zeros((1, 32), np.float32), "lb"),
    ]
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 7]), helper.make_tensor_value_info("seq", TensorProto.FLOAT, [3, 1, 5])]
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


def seed_external(directory: Path) -> onnx.ModelProto:
    """seed_mlp with w1 and w3 in ``weights.bin`` beside the model (written here)."""
    model = seed_mlp()
    blob = bytearray()
    for init in model.graph.initializer:
        if init.name in ("w1", "w3"):
            data = init.raw_data
            offset = len(blob)
            blob += data
            init.ClearField("raw_data")
            init.data_location = TensorProto.EXTERNAL
            for key, value in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(len(data)))):
                init.external_data.add(key=key, value=value)
    (directory / "weights.bin").write_bytes(bytes(blob))
    return model


SEEDS = {"mlp": seed_mlp, "cnn": seed_cnn, "misc": seed_misc}
