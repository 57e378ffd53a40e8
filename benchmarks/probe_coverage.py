"""On how many of the ONNX files people have does the dynamic probe run?

Finds the trained ONNX models shipped inside installed packages (site-packages, skipping the
onnx package's own operator test data), builds scikit-learn MLP exports (skl2onnx) and
LSTM/GRU exports, runs the probe on each (--probe always) and prints, per file, whether it ran
forward and backward (torch), forward only (onnxruntime, with why torch could not) or not at all
and why, then the share on which it ran.

    python benchmarks/probe_coverage.py [--timeout 120]
"""

from __future__ import annotations

import argparse
import site
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from initlint.options import LintOptions, ProbeOptions  # noqa: E402
from initlint.runner import lint_target  # noqa: E402

# Operator conformance data of the onnx package: single-op test graphs, not models people use.
SKIP_PARTS = ("backend/test/data",)
MIN_BYTES = 50_000  # below this, package "models" are toy examples (onnxruntime's datasets)


def installed_onnx_files() -> list[Path]:
    roots = {Path(p) for p in site.getsitepackages() + [site.getusersitepackages()] if Path(p).is_dir()}
    found = []
    for root in roots:
        for path in root.rglob("*.onnx"):
            if any(part in path.as_posix() for part in SKIP_PARTS) or path.stat().st_size < MIN_BYTES:
                continue
            found.append(path)
    return sorted(found)


def built_exports(folder: Path) -> list[Path]:
    paths = []
    try:
        import numpy as np
        from skl2onnx import to_onnx
        from sklearn.datasets import make_classification, make_regression
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        features, labels = make_classification(300, 20, random_state=0)
        for hidden in ((64,), (64, 64), (128, 64, 32)):
            model = MLPClassifier(hidden_layer_sizes=hidden, max_iter=30, random_state=0).fit(features, labels)
            path = folder / f"sklearn_mlp_classifier_{'x'.join(map(str, hidden))}.onnx"
            path.write_bytes(to_onnx(model, features[:1].astype(np.float32), options={"zipmap": False}).SerializeToString())
            paths.append(path)
        features, targets = make_regression(300, 20, random_state=0)
        model = MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=30, random_state=0).fit(features, targets)
        path = folder / "sklearn_mlp_regressor_64x64.onnx"
        path.write_bytes(to_onnx(model, features[:1].astype(np.float32)).SerializeToString())
        paths.append(path)
    except ImportError as exc:
        print(f"(scikit-learn exports skipped: {exc})")
    import torch
    import torch.nn as nn

    class Recurrent(nn.Module):
        def __init__(self, kind: str, bidirectional: bool):
            super().__init__()
            self.rnn = getattr(nn, kind)(32, 64, num_layers=1, batch_first=True, bidirectional=bidirectional)
            self.head = nn.Linear(64 * (2 if bidirectional else 1), 8)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    for kind in ("LSTM", "GRU"):
        for bidirectional in (False, True):
            path = folder / f"torch_{kind.lower()}{'_bidirectional' if bidirectional else ''}.onnx"
            torch.onnx.export(Recurrent(kind, bidirectional), torch.randn(2, 12, 32), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
            paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="probe seconds per file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        groups = {"installed packages": installed_onnx_files(), "built exports": built_exports(Path(tmp))}
        ran_total = total = 0
        for group, paths in groups.items():
            ran = both = 0
            print(f"\n{group} ({len(paths)} files)")
            for path in paths:
                start = time.perf_counter()
                options = LintOptions(probe="always", allow_empty=True, probe_options=ProbeOptions(timeout_s=args.timeout))
                result = lint_target(str(path), options)
                probe = result.probe or {}
                status = probe.get("status") or ("error" if result.error else "not run")
                why = probe.get("reason") or result.error or ""
                ran += status == "ok"
                forward_only = probe.get("forward_only")
                both += status == "ok" and not forward_only
                mode = "FAIL" if status != "ok" else "fwd " if forward_only else "f+b "
                label = path.name if group == "built exports" else str(path).split("site-packages/")[-1]
                print(f"  {mode} {label:70s} {time.perf_counter() - start:6.1f}s {(forward_only or why)[:110]}")
            print(f"  -> the probe ran on {ran} of {len(paths)} ({both} forward and backward, {ran - both} forward only)")
            ran_total += ran
            total += len(paths)
        print(f"\nprobe ran on {ran_total} of {total} ONNX files ({100 * ran_total / max(total, 1):.0f}%)")


if __name__ == "__main__":
    main()
