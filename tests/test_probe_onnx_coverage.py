"""The probe runs on ONNX files people have: scikit-learn MLPs exported with skl2onnx, and
LSTM/GRU exports (converters registered through onnx2torch's own registry)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2torch")
nn = torch.nn

from initlint.loaders import load  # noqa: E402
from initlint.options import LintOptions  # noqa: E402
from initlint.runner import lint_target  # noqa: E402


def probe_of(path):
    result = lint_target(str(path), LintOptions(probe="always"))
    assert result.error is None, result.error
    return result.probe


def test_probe_runs_on_a_scikit_learn_mlp_export(tmp_path):
    pytest.importorskip("sklearn")
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.datasets import make_classification
    from sklearn.neural_network import MLPClassifier

    features, labels = make_classification(200, 10, random_state=0)
    model = MLPClassifier((32, 32), max_iter=20, random_state=0).fit(features, labels)
    proto = skl2onnx.to_onnx(model, features[:1].astype(np.float32), options={"zipmap": False})
    path = tmp_path / "mlp.onnx"
    path.write_bytes(proto.SerializeToString())
    probe = probe_of(path)
    assert probe["status"] == "ok", probe.get("reason")
    assert probe["loss"] == "cross_entropy"  # on the probabilities, not the label output
    assert len(probe["layers"]) == 3 and probe["gradient_ratio"] is not None


class Recurrent(nn.Module):
    def __init__(self, kind: str, bidirectional: bool):
        super().__init__()
        self.rnn = getattr(nn, kind)(16, 32, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(32 * (2 if bidirectional else 1), 4)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y[:, -1])


@pytest.mark.parametrize("kind, bidirectional", [("LSTM", False), ("GRU", True), ("LSTM", True)])
def test_probe_runs_on_recurrent_exports_and_converts_them_exactly(tmp_path, kind, bidirectional):
    ort = pytest.importorskip("onnxruntime")
    from initlint.probe.model import prepare

    torch.manual_seed(0)
    model = Recurrent(kind, bidirectional).eval()
    path = tmp_path / f"{kind}.onnx"
    example = torch.randn(3, 10, 16)
    torch.onnx.export(model, example, str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    converted = prepare(load(str(path)), {}, None, "cpu").module  # the probe's own conversion
    expected = ort.InferenceSession(str(path)).run(None, {"x": example.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(converted(example).numpy(), expected, rtol=1e-4, atol=1e-5)
    probe = probe_of(path)
    assert probe["status"] == "ok", probe.get("reason")
    rnn = next(row for row in probe["layers"] if row["kind"] == "rnn")
    assert rnn["second_moment"] and rnn["grad_norm"]  # its output and the gradient at its input are measured
    assert any(layer.kind == "rnn" for layer in load(str(path)).weighted_layers())
