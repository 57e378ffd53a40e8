"""Keras 3 models (PyTorch backend) as inputs: specs, .keras archives and their ONNX exports.

The seed's comparison: the same 20-layer Dense stack with Keras' default init (glorot_uniform)
and with he_normal before ReLU, and with sigmoid. No --input-shape anywhere: the input comes
from the model's own keras.Input.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen by the environment
    pytest.skip("the Keras tests need KERAS_BACKEND=torch", allow_module_level=True)

from click.testing import CliRunner  # noqa: E402

from initlint.cli import main  # noqa: E402
from initlint.loaders import load  # noqa: E402

HERE = Path(__file__).resolve().parent
SPECS = HERE / "keras_specs.py"

import keras_specs  # noqa: E402  (tests/ is on sys.path under pytest's rootdir layout)


def lint(*args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(main, [*args, "--format", "json"], catch_exceptions=False)
    report = json.loads(result.output) if result.output.startswith("{") else None
    findings = report["results"][0]["findings"] if report else []
    return result.exit_code, findings, result.output


def codes_at(findings: list[dict]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for f in findings:
        found.setdefault(f["code"], set()).add(f["location"])
    return found


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The three stacks as .keras archives and as Keras' own ONNX exports."""
    folder = tmp_path_factory.mktemp("keras")
    paths = {}
    for name in ("glorot_relu", "he_relu", "glorot_sigmoid"):
        model = getattr(keras_specs, name)()
        paths[name, "keras"] = folder / f"{name}.keras"
        model.save(paths[name, "keras"])
        model(keras.ops.zeros((1, keras_specs.WIDTH)))  # Keras exports only a model that was called
        try:
            model.export(str(folder / f"{name}.onnx"), format="onnx", verbose=False)
        except Exception as exc:  # pragma: no cover - depends on the installed exporter
            paths[name, "onnx"] = f"skip: {type(exc).__name__}: {exc}"
        else:
            paths[name, "onnx"] = folder / f"{name}.onnx"
    return paths


def target_of(saved, name: str, form: str) -> str:
    if form == "spec":
        keras.backend.clear_session()  # Keras numbers layer names per session: a fresh one, as on the command line
        return f"{SPECS}:{name}"
    path = saved[name, form]
    if isinstance(path, str):
        pytest.skip(f"Keras could not export ONNX here ({path})")
    return str(path)


@pytest.mark.parametrize("form", ["spec", "keras", "onnx"])
def test_glorot_relu_stack_is_flagged_with_il201_and_il301(saved, form):
    code, findings, output = lint(target_of(saved, "glorot_relu", form), "--probe", "never")
    assert code == 1, output
    found = codes_at(findings)
    assert "IL201" in found and "IL301" in found, found
    il201 = next(f for f in findings if f["code"] == "IL201")
    assert il201["severity"] == "error"
    if form != "onnx":  # Keras layer names: the first Dense of the run
        assert il201["location"] == "dense/kernel"
        assert all(loc.startswith("dense") and loc.endswith("/kernel") for loc in found["IL301"]), found


@pytest.mark.parametrize("form", ["spec", "keras", "onnx"])
def test_he_normal_twin_is_clean(saved, form):
    code, findings, output = lint(target_of(saved, "he_relu", form), "--probe", "never")
    assert code == 0, output
    assert findings == []


@pytest.mark.parametrize("form", ["spec", "keras", "onnx"])
def test_glorot_sigmoid_stack_is_a_deep_saturating_stack(saved, form):
    code, findings, output = lint(target_of(saved, "glorot_sigmoid", form), "--probe", "never")
    assert code == 1, output
    assert "IL303" in codes_at(findings), findings


def test_keras_file_reads_keras_structure_and_fans(saved):
    graph = load(str(saved["glorot_relu", "keras"]))
    assert graph.format == "keras" and graph.metadata["framework"] == "keras"
    dense = graph.layers["dense_3"]
    assert dense.weight.name == "dense_3/kernel" and dense.weight.shape == (64, 64)
    assert (dense.fan_in, dense.fan_out, dense.unit_axis) == (64, 64, -1)
    # activation="relu" is its own layer after the Dense, so the rules see it
    assert graph.activation_after(dense).activation == "relu"
    # each parameter once: no doubled count, no lifted_tensor names
    assert sum(t.size for t in graph.tensors.values()) == 20 * (64 * 64 + 64) + 64 * 10 + 10
    assert not any("lifted" in name for name in graph.tensors)
    assert graph.inputs == {"input_layer": ((None, 64), "float32")}


def test_functional_graph_keeps_residual_add_batchnorm_and_conv_fans():
    graph = load(f"{SPECS}:residual_cnn")
    conv = graph.layers["conv2d"]
    assert conv.kind == "conv" and conv.weight.shape == (3, 3, 3, 8)
    assert (conv.fan_in, conv.fan_out) == (27, 72)  # kernel [kh, kw, in, out]: fan_in = 3·3·3
    assert graph.layers["batch_normalization"].kind == "norm"
    add = graph.layers["add"]
    assert add.kind == "add" and set(add.inputs) == {"activation", "conv2d_2"}
    assert graph.layers["conv2d_1/relu"].inputs == ["conv2d_1"]


def test_zero_last_conv_of_a_residual_branch_is_not_flagged():
    code, findings, output = lint(f"{SPECS}:residual_cnn", "--probe", "never")
    assert code == 0, output


def test_keras_fix_hints_use_keras_vocabulary(saved):
    code, findings, _ = lint(str(saved["glorot_relu", "keras"]), "--probe", "never")
    il201 = next(f for f in findings if f["code"] == "IL201")
    assert 'kernel_initializer="he_normal"' in il201["fix"]
    assert "nn.init" not in il201["fix"]


def test_lambda_layer_is_refused_in_safe_mode_and_loads_when_trusted(tmp_path):
    inputs = keras.Input((8,))
    x = keras.layers.Dense(8)(inputs)
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(x)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    result = CliRunner().invoke(main, [str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    line = result.output.splitlines()[0]
    assert "lambda.keras" in line and "unsafe" in line and "Traceback" not in result.output
    trusted = CliRunner().invoke(main, [str(path), "--trust-pickle", "--probe", "never"], catch_exceptions=False)
    assert trusted.exit_code == 0, trusted.output


def test_unregistered_custom_layer_is_a_one_line_error(tmp_path):
    @keras.saving.register_keras_serializable(package="initlint_test")
    class Scale(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((4,))
    outputs = Scale()(keras.layers.Dense(4)(inputs))
    path = tmp_path / "custom.keras"
    keras.Model(inputs, outputs).save(path)
    keras.saving.get_custom_objects().pop("initlint_test>Scale")
    result = CliRunner().invoke(main, [str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    assert "custom Keras class" in result.output.splitlines()[0] and "Traceback" not in result.output


def test_a_keras_archive_that_is_not_one_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
    result = CliRunner().invoke(main, [str(path)], catch_exceptions=False)
    assert result.exit_code == 2 and "not a Keras archive" in result.output


@pytest.mark.parametrize(
    "initializer, expected",
    [
        ("he_normal", "he_truncated_normal_fan_in"),  # Keras' he_normal is a truncated normal
        ("glorot_uniform", "glorot_uniform"),
        ("glorot_normal", "glorot_truncated_normal"),
        ("lecun_normal", "lecun_truncated_normal"),
        (keras.initializers.RandomNormal(), "keras_random_normal"),  # stddev 0.05
        (keras.initializers.RandomUniform(), "keras_random_uniform"),
        (keras.initializers.TruncatedNormal(), "keras_truncated_normal"),
    ],
)
def test_fingerprints_know_keras_initializers(initializer, expected):
    from initlint.fingerprint import fingerprint
    from initlint.loaders.keras import graph_from_keras

    for seed in range(8):  # Keras' torch-backend truncated normal leaves rare untruncated values
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((256,)), keras.layers.Dense(128, kernel_initializer=initializer)])
        (layer,) = graph_from_keras(model, "m").weighted_layers()
        fp = fingerprint(layer)
        assert fp.status == "identified" and fp.names[0] == expected, (seed, fp.describe())


@pytest.mark.parametrize("form", ["spec", "keras"])
def test_probe_runs_on_keras_models_and_settles_the_forward_claims_at_keras_names(saved, form):
    """The probe reads the input shape from the Keras Input and measures at Keras layer names:
    IL201 (and IL301's forward claim) end confirmed by measurement on the Glorot + ReLU stack."""
    code, findings, output = lint(target_of(saved, "glorot_relu", form), "--probe", "always")
    assert code == 1, output
    il201 = next(f for f in findings if f["code"] == "IL201")
    assert il201["location"] == "dense/kernel"
    assert il201["probe"]["verdict"] == "confirmed", il201["probe"]
    forward_il301 = [f for f in findings if f["code"] == "IL301" and "forward variance ratio" in f["probe"].get("reason", "")]
    assert forward_il301 and all(f["probe"]["verdict"] == "confirmed" for f in forward_il301), forward_il301
    report = json.loads(output)["results"][0]["probe"]
    assert report["status"] == "ok" and report["input_shapes"] == {"input0": [256, keras_specs.WIDTH]}
    assert [row["weight"] for row in report["layers"]][:2] == ["dense/kernel", "dense_1/kernel"]
    assert report["gradient_ratio"] is not None  # gradients reached the layers through the routed calls


def test_probe_leaves_the_he_normal_twin_clean(saved):
    code, findings, output = lint(target_of(saved, "he_relu", "spec"), "--probe", "always")
    assert code == 0, output
    assert findings == []
