"""Hostile archives generated here: loading them with default flags runs nothing they carry."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from click.testing import CliRunner

from initlint.cli import main


def hostile_pt2(path, marker):
    """A pickle-free .pt2 whose symbolic batch size is Python that creates ``marker``."""
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    program = torch.export.export(model, (torch.randn(3, 4),), dynamic_shapes=({0: torch.export.Dim("batch", min=2)},))
    clean = path.with_suffix(".clean.pt2")
    torch.export.save(program, str(clean))
    payload = f"(__import__('os').system('touch {marker}'))*0 + s0"
    out = io.BytesIO()
    with zipfile.ZipFile(clean) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("models/model.json"):
                program_json = json.loads(data)
                symbol = next(iter(program_json["range_constraints"]))
                text = json.dumps(program_json).replace(f"Symbol('{symbol}', positive=True, integer=True)", payload.replace("s0", symbol))
                program_json = json.loads(text)
                assert payload.replace("s0", symbol) in text
                data = json.dumps(program_json).encode()
            target.writestr(info.filename, data)
    path.write_bytes(out.getvalue())
    return path


@pytest.mark.parametrize("flags", [[], ["--trust-code"], ["--probe", "always"]])
def test_a_pt2_size_expression_is_never_evaluated_as_code(tmp_path, flags):
    marker = tmp_path / "MARKER"
    path = hostile_pt2(tmp_path / "model.pt2", marker)
    result = CliRunner().invoke(main, [str(path), *flags])
    assert not marker.exists(), "the size expression ran"
    assert result.exit_code == 2 and "not plain arithmetic" in result.output, result.output
    assert "Traceback" not in result.output
