"""Fuzzing every file format through the real command: ONNX, safetensors, .pt2 and TorchScript.

Small valid seeds are built here (no file is committed) and mutated: bytes anywhere, or the
structured parts (safetensors header JSON; .pt2 ``models/model.json`` and weight configs;
TorchScript ``data.pkl``, ``code/`` and ``constants.pkl``) re-zipped, with the sizes, shapes,
dtypes and expressions a hostile file would lie about. The files go to ``python -m initlint
--probe never --format json`` in batches, each batch a process under an address-space limit
and a timeout (worker processes contain native crashes). Every batch must end with exit code
0, 1 or 2, no traceback, one JSON result per file, every error on one line naming its file.

The suite runs a fixed-seed sample. The long run (figures in docs/fuzzing.md)::

    INITLINT_FUZZ_FILES=10000 INITLINT_FUZZ_SEED=1 python -m pytest -q tests/test_fuzz_formats.py -s

prints the counts, exit codes, slowest file and the peak resident memory of any process.
"""

from __future__ import annotations

import io
import json
import os
import random
import resource
import struct
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

FILES = int(os.environ.get("INITLINT_FUZZ_FILES", "24"))
SEED = int(os.environ.get("INITLINT_FUZZ_SEED", "20261129"))
BATCH = 50
BATCH_TIMEOUT_S = 600
ADDRESS_SPACE = 8 << 30  # torch maps ~2 GB of libraries; a believed declaration needs far more
PEAK_LIMIT = 2 << 30


# --- seeds --------------------------------------------------------------------------------------


def seed_safetensors() -> bytes:
    rng = np.random.default_rng(0)
    tensors = {"fc1.weight": (rng.standard_normal((8, 4)) * 0.5).astype(np.float32), "fc1.bias": np.zeros(8, np.float32), "fc2.weight": np.zeros((2, 8), np.float16)}
    header, blob = {}, b""
    for name, array in tensors.items():
        data = array.tobytes()
        header[name] = {"dtype": {"float32": "F32", "float16": "F16"}[str(array.dtype)], "shape": list(array.shape), "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + blob


def _torch_model():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch, torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def seed_pt2(directory: Path) -> bytes:
    torch, model = _torch_model()
    path = directory / "seed.pt2"
    program = torch.export.export(model, (torch.randn(3, 4),), dynamic_shapes=({0: torch.export.Dim("batch", min=2)},))
    torch.export.save(program, str(path))
    return path.read_bytes()


def seed_torchscript(directory: Path) -> bytes:
    torch, model = _torch_model()
    path = directory / "seed.pt"
    torch.jit.script(model).save(str(path))
    return path.read_bytes()


def seed_onnx() -> bytes:
    from fuzz_seeds import onnx_mlp_bytes

    return onnx_mlp_bytes()


# --- mutations ----------------------------------------------------------------------------------

HUGE_INTS = [0, -1, 7, 2**31, 2**40, 10**12, 2**63 - 1, -(2**63), 10**30]
EXPRESSIONS = ["s0", "2*s0", "Symbol('s0', positive=True, integer=True)", "10**10**10", "(__import__('os').getpid())*0 + s0", "", "s0 +", "Pow(s0, s0)", "x" * 5000]


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        pos = rng.randrange(len(buf))
        kind = rng.choice(["flip", "set", "truncate", "insert", "delete"])
        if kind == "flip":
            buf[pos] ^= 1 << rng.randrange(8)
        elif kind == "set":
            buf[pos] = rng.randrange(256)
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
        else:
            del buf[pos : pos + rng.randint(1, 16)]
    return bytes(buf)


def mutate_json(rng: random.Random, value, depth: int = 0):
    """One random change somewhere in a JSON value: a hostile number, shape, string or deletion."""
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        if rng.random() < 0.1:
            value.pop(key)
        elif key in ("expr_str",) or (isinstance(value[key], str) and rng.random() < 0.3):
            value[key] = rng.choice(EXPRESSIONS)
        else:
            value[key] = mutate_json(rng, value[key], depth + 1)
        return value
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        choice = rng.random()
        if choice < 0.15:
            return value * rng.choice([2, 40])  # more dims
        if choice < 0.25:
            return value[:i]
        value[i] = mutate_json(rng, value[i], depth + 1)
        return value
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice(HUGE_INTS)
    if isinstance(value, float):
        return rng.choice([1e30, -1.0, float(2**63)])
    if isinstance(value, str):
        return rng.choice(EXPRESSIONS + ["F64", "BOOL", "Q8", "../../etc/passwd"])
    return rng.choice([None, [], {}, 1e30, "x"])


def mutate_safetensors(rng: random.Random, data: bytes) -> bytes:
    if rng.random() < 0.3:
        return mutate_bytes(rng, data)
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + length])
    if rng.random() < 0.1:  # many entries
        for i in range(rng.choice([1000, 100_000])):
            header[f"t{i}"] = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    else:
        for _ in range(rng.randint(1, 3)):
            header = mutate_json(rng, header)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + length :]


def mutate_zip(rng: random.Random, data: bytes) -> bytes:
    """.pt2 and TorchScript: change one member (JSON members as JSON, others as bytes), re-zip."""
    if rng.random() < 0.2:
        return mutate_bytes(rng, data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    name = rng.choice(sorted(members))
    if name.endswith(".json"):
        try:
            members[name] = json.dumps(mutate_json(rng, json.loads(members[name]))).encode()
        except (ValueError, RecursionError):
            members[name] = mutate_bytes(rng, members[name])
    elif rng.random() < 0.2:
        del members[name]
    else:
        members[name] = mutate_bytes(rng, members[name])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return out.getvalue()


FORMATS = {
    "onnx": (".onnx", mutate_bytes),
    "safetensors": (".safetensors", mutate_safetensors),
    "pt2": (".pt2", mutate_zip),
    "torchscript": (".pt", mutate_zip),
}


# --- the run ------------------------------------------------------------------------------------


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


# Runs the command and reports the peak resident memory of it and its workers: the test process's
# own RUSAGE_CHILDREN would also count every subprocess the rest of the suite ran before.
_PEAK_MARK = "INITLINT_FUZZ_PEAK_KIB="
_MEASURED = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    f"sys.stderr.write('\\n{_PEAK_MARK}%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def run_batch(paths: list[Path], workdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "INITLINT_DEBUG"}
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", _MEASURED, sys.executable, "-m", "initlint", "--probe", "never", "--format", "json", "-j", "2", *map(str, paths)],
        capture_output=True, text=True, timeout=BATCH_TIMEOUT_S, preexec_fn=_limited, env=env, cwd=workdir,
    )
    stderr, _, peak = out.stderr.rpartition(_PEAK_MARK)
    peak_bytes = int(peak.strip()) * 1024 if peak.strip().isdigit() else 0
    return {"returncode": out.returncode, "stdout": out.stdout, "stderr": stderr.rstrip("\n"), "elapsed_s": time.monotonic() - start, "peak_rss_bytes": peak_bytes}


def fuzz(count: int, seed: int, workdir: Path) -> dict:
    rng = random.Random(seed)
    seeds = {"onnx": seed_onnx(), "safetensors": seed_safetensors(), "pt2": seed_pt2(workdir), "torchscript": seed_torchscript(workdir)}
    figures = {"files": 0, "by_format": Counter(), "exit_codes": Counter(), "errors": 0, "tracebacks": 0, "hangs": 0, "slowest_s": 0.0, "slowest": None, "peak_rss_bytes": 0}
    names = sorted(FORMATS)
    done = 0
    while done < count:
        batch = []
        for i in range(min(BATCH, count - done)):
            fmt = names[(done + i) % len(names)]
            suffix, mutate = FORMATS[fmt]
            path = workdir / f"f{done + i:05d}-{fmt}{suffix}"
            path.write_bytes(mutate(rng, seeds[fmt]))
            batch.append(path)
            figures["by_format"][fmt] += 1
        try:
            run = run_batch(batch, workdir)
        except subprocess.TimeoutExpired:
            figures["hangs"] += 1
            raise AssertionError(f"a batch ran past {BATCH_TIMEOUT_S} s: {[p.name for p in batch]}")
        figures["exit_codes"][run["returncode"]] += 1
        figures["peak_rss_bytes"] = max(figures["peak_rss_bytes"], run["peak_rss_bytes"])
        assert run["returncode"] in (0, 1, 2), (run["returncode"], run["stderr"][-3000:])
        if "Traceback" in run["stdout"] + run["stderr"]:
            figures["tracebacks"] += 1
            raise AssertionError(run["stderr"][-5000:])
        results = json.loads(run["stdout"])["results"]
        assert [r["target"] for r in results] == [str(p) for p in batch]
        for result in results:
            if result["error"]:
                figures["errors"] += 1
                assert "\n" not in result["error"] and result["error"].startswith(result["target"]), result["error"]
                assert "could not be read (" not in result["error"], result["error"]  # an unexpected exception in a loader
            if result["elapsed_s"] > figures["slowest_s"]:
                figures["slowest_s"], figures["slowest"] = result["elapsed_s"], Path(result["target"]).name
        for path in batch:
            path.unlink()
        done += len(batch)
        figures["files"] = done
        if count > 1000:  # the long run: a line per batch, so an interrupted run still says how far it got
            peak = figures["peak_rss_bytes"] >> 20
            print(f"fuzz: {done} files, exit codes {dict(figures['exit_codes'])}, {figures['errors']} one-line errors, slowest {figures['slowest_s']:.1f} s, peak {peak} MiB", file=sys.stderr, flush=True)
    return figures


def test_fuzzed_files_of_every_format_end_in_a_result_or_one_line(tmp_path):
    pytest.importorskip("torch")
    figures = fuzz(FILES, SEED, tmp_path)
    print(json.dumps({k: (dict(v) if isinstance(v, Counter) else v) for k, v in figures.items()}, indent=1))
    assert figures["files"] == FILES and figures["tracebacks"] == 0 and figures["hangs"] == 0
    assert set(figures["exit_codes"]) <= {0, 1, 2}
    assert figures["peak_rss_bytes"] < PEAK_LIMIT, figures["peak_rss_bytes"]
