"""Fuzzing the ONNX path: every mutated model ends in a result or in one clean error line.

Real small models (tests/fuzz_seeds.py, built with onnx.helper: an MLP, a CNN with BatchNorm, a grab-bag of
constants, embeddings, LSTM and control flow, and one with external data) are mutated at two
levels: bytes (bit flips, overwrites, truncation, insertions, deletions, splices) and protobuf
fields (huge/negative dims, wrong element types, lying raw data, hostile external-data
entries, dangling names, cycles, wrong op types and attribute types, nested subgraphs). Each
input goes through ``lint_target`` in-process with INITLINT_DEBUG=1, so an unexpected exception
surfaces as a traceback instead of being turned into a generic message; a sample also goes
through the CLI in a subprocess under an address-space limit and a timeout.

The suite runs a fixed-seed short run (FUZZ_EXAMPLES per strategy, derandomized). A long run:

    INITLINT_FUZZ_EXAMPLES=20000 INITLINT_FUZZ_SEED=random python -m pytest -q tests/test_fuzz.py

Every crash found becomes a file in tests/fixtures_fuzz/ (test_regression_fixtures replays them).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper

from initlint.report import render_json, render_text
from initlint.runner import LintOptions, lint_target
from tests.fuzz_seeds import SEEDS, seed_external, seed_mlp

FIXTURES = Path(__file__).parent / "fixtures_fuzz"
FUZZ_EXAMPLES = int(os.environ.get("INITLINT_FUZZ_EXAMPLES", "1200"))
FUZZ_SEED = os.environ.get("INITLINT_FUZZ_SEED", "20261126")
PER_INPUT_TIMEOUT_S = 10  # a small model that takes longer than this is hanging
OPTIONS = LintOptions(probe="never")
# What lint_target says for exceptions that are not InitlintError: each one is a loader bug.
UNEXPECTED = ("could not be read (", "out of memory while reading", "nested too deeply")


# --- the check every input must pass ------------------------------------------------------------


# Address space an input may add on top of what the process already maps: the seeds are a few
# KB, so an allocation this large means a declared size was believed.
MEMORY_HEADROOM = 1 << 30


@contextlib.contextmanager
def memory_bound():
    """Cap the address space (soft limit, restored after) so a runaway allocation fails fast
    with MemoryError, which lint_target reports as 'out of memory': a failure here."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    limit = mapped + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise Hang(f"no result after {PER_INPUT_TIMEOUT_S}s")


def check_input(path: Path) -> None:
    """A normal result, or an InitlintError's one line naming the file; rules do not crash."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(PER_INPUT_TIMEOUT_S)
    try:
        with memory_bound():
            result = lint_target(str(path), OPTIONS)  # INITLINT_DEBUG=1: unexpected exceptions propagate
            render_text([result])
            render_json([result])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if result.error is not None:
        assert result.error.startswith(str(path)), result.error
        assert "\n" not in result.error, result.error
        assert not any(marker in result.error for marker in UNEXPECTED), result.error
    crashed_rules = [note for note in result.notes if "failed and was skipped" in note]
    assert not crashed_rules, crashed_rules


@pytest.fixture(autouse=True)
def _debug(monkeypatch):
    monkeypatch.setenv("INITLINT_DEBUG", "1")


def _settings():
    return settings(
        max_examples=FUZZ_EXAMPLES,
        derandomize=FUZZ_SEED != "random",
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


# --- byte-level mutations -----------------------------------------------------------------------


def _byte_mutation(size: int):
    pos = st.integers(0, max(size - 1, 0))
    return st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("set"), pos, st.integers(0, 255)),
        st.tuples(st.just("truncate"), pos, st.just(0)),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=12)),
        st.tuples(st.just("delete"), pos, st.integers(1, 16)),
        st.tuples(st.just("splice"), pos, pos),
        st.tuples(st.just("varint"), pos, st.sampled_from([b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", b"\x00", b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f"])),
    )


def apply_bytes(data: bytes, mutations) -> bytes:
    buf = bytearray(data)
    for kind, pos, arg in mutations:
        pos = min(pos, max(len(buf) - 1, 0))
        if not buf:
            break
        if kind == "flip":
            buf[pos] ^= 1 << arg
        elif kind == "set":
            buf[pos] = arg
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = arg
        elif kind == "delete":
            del buf[pos : pos + arg]
        elif kind == "splice":
            chunk = bytes(buf[pos : pos + 24])
            at = min(arg, len(buf))
            buf[at:at] = chunk
        elif kind == "varint":
            buf[pos : pos + len(arg)] = arg
    return bytes(buf)


SEED_BYTES = {name: build().SerializeToString() for name, build in SEEDS.items()}


@st.composite
def byte_mutants(draw):
    name = draw(st.sampled_from(sorted(SEED_BYTES)))
    data = SEED_BYTES[name]
    return name, apply_bytes(data, draw(st.lists(_byte_mutation(len(data)), min_size=1, max_size=4)))


@pytest.mark.filterwarnings("ignore")
def test_byte_mutations_end_in_a_result_or_a_clean_error(tmp_path):
    path = tmp_path / "model.onnx"

    @_settings()
    @seed(int(FUZZ_SEED) if FUZZ_SEED.isdigit() else 0)
    @given(byte_mutants())
    def run(case):
        path.write_bytes(case[1])
        check_input(path)

    run()


# --- protobuf-field mutations -------------------------------------------------------------------

HUGE = [0, -1, 1, 7, 2**31, 2**32 + 1, 10**12, 2**62, 2**63 - 1, -(2**63)]
LOCATIONS = ["weights.bin", "../weights.bin", "/etc/passwd", "", ".", "missing.bin", "w\x00.bin", "sub/../weights.bin", "weights.bin/", "a" * 5000]
OPS = ["MatMul", "Gemm", "Conv", "ConvTranspose", "Gather", "LSTM", "GRU", "BatchNormalization", "LayerNormalization", "Relu", "PRelu", "Clip", "Add", "Mul", "Concat", "Reshape", "Transpose", "Flatten", "Identity", "Cast", "ConstantOfShape", "Constant", "If", "Loop", "Attention", "Softmax", "Shape", "Squeeze", "SkipLayerNormalization", "Unknown"]
ATTR_NAMES = ["group", "perm", "alpha", "transB", "hidden_size", "value", "value_float", "value_ints", "to", "axis", "min", "max", "then_branch"]


def _attribute(name: str, kind: int, number: int) -> onnx.AttributeProto:
    if kind == 0:
        return helper.make_attribute(name, number)
    if kind == 1:
        return helper.make_attribute(name, float(number) / 3)
    if kind == 2:
        return helper.make_attribute(name, "x" * (number % 7))
    if kind == 3:
        return helper.make_attribute(name, [number, -number, 0][: 1 + number % 3])
    if kind == 4:
        return helper.make_attribute(name, TensorProto(name="t", data_type=number % 20, dims=[number % 5, 10**9], raw_data=b"\0" * (number % 9)))
    if kind == 5:
        return helper.make_attribute(name, seed_mlp().graph)
    attribute = onnx.AttributeProto(name=name, type=onnx.AttributeProto.INT, f=1.5)  # type says INT, payload a float
    return attribute


def _field_mutation():
    index = st.integers(0, 40)
    return st.one_of(
        st.tuples(st.just("dims"), index, st.sampled_from(HUGE), st.integers(0, 3)),
        st.tuples(st.just("data_type"), index, st.integers(-2, 30), st.just(0)),
        st.tuples(st.just("raw_len"), index, st.integers(-8, 8), st.just(0)),
        st.tuples(st.just("to_typed"), index, st.integers(0, 600), st.just(0)),
        st.tuples(st.just("typed_values"), index, st.integers(0, 25), st.sampled_from([-(2**31), -1, 300, 2**31 - 1])),
        st.tuples(st.just("external"), index, st.sampled_from(range(len(LOCATIONS))), st.sampled_from([0, 4, 2**40, -4])),
        st.tuples(st.just("rename_input"), index, index, st.integers(0, 2)),
        st.tuples(st.just("op_type"), index, st.sampled_from(OPS), st.just(0)),
        st.tuples(st.just("attribute"), index, st.sampled_from(ATTR_NAMES), st.tuples(st.integers(0, 6), st.integers(-3, 2**20))),
        st.tuples(st.just("node_name"), index, st.sampled_from(["", "output:y", "fc1", "x" * 300]), st.just(0)),
        st.tuples(st.just("drop"), index, st.sampled_from(["initializer", "node", "input", "output"]), st.just(0)),
        st.tuples(st.just("nest"), index, st.integers(1, 40), st.just(0)),
        st.tuples(st.just("duplicate"), index, st.sampled_from(["initializer", "node"]), st.just(0)),
    )


def _pick(container, index):
    return container[index % len(container)] if len(container) else None


def apply_fields(model: onnx.ModelProto, mutations) -> None:
    graph = model.graph
    for kind, index, arg, extra in mutations:
        init = _pick(graph.initializer, index)
        node = _pick(graph.node, index)
        if kind == "dims" and init is not None:
            dims = list(init.dims) or [1]
            dims[extra % len(dims)] = arg
            try:
                init.ClearField("dims")
                init.dims.extend(dims)
            except ValueError:  # out of int64 range: protobuf refuses it
                pass
        elif kind == "data_type" and init is not None:
            init.data_type = arg if arg >= 0 else 0
        elif kind == "raw_len" and init is not None and init.HasField("raw_data"):
            data = init.raw_data
            init.raw_data = data[: max(len(data) + arg, 0)] if arg < 0 else data + b"\x7f" * arg
        elif kind == "to_typed" and init is not None:
            init.ClearField("raw_data")
            init.float_data.extend([0.5] * arg)
            init.int32_data.extend([1] * (arg // 2))
        elif kind == "typed_values" and init is not None:  # typed fields with extreme values
            count = math.prod(init.dims)
            if count <= 4096:
                init.ClearField("raw_data")
                init.data_type = arg
                init.int32_data.extend([extra] * count)
                init.int64_data.extend([extra] * count)
                init.uint64_data.extend([abs(extra) * 2**32] * count)
                init.float_data.extend([float(extra)] * count)
                init.double_data.extend([float(extra) * 1e300] * count)
        elif kind == "external" and init is not None:
            init.data_location = TensorProto.EXTERNAL
            init.ClearField("external_data")
            for key, value in (("location", LOCATIONS[arg]), ("offset", str(extra)), ("length", str(abs(extra) * 3 or 64))):
                init.external_data.add(key=key, value=value)
        elif kind == "rename_input" and node is not None and len(node.input):
            names = [o for n in graph.node for o in n.output] + ["dangling"]
            node.input[extra % len(node.input)] = names[arg % len(names)]  # a later output: a cycle
        elif kind == "op_type" and node is not None:
            node.op_type = arg
        elif kind == "attribute" and node is not None:
            node.attribute.append(_attribute(arg, *extra))
        elif kind == "node_name" and node is not None:
            node.name = arg
        elif kind == "drop":
            container = getattr(graph, arg)
            if len(container):
                del container[index % len(container)]
        elif kind == "nest" and node is not None:
            inner = onnx.GraphProto()
            inner.CopyFrom(graph)
            empty = onnx.GraphProto(name="empty")
            for _ in range(arg):  # subgraphs inside subgraphs, as deep as protobuf lets us build
                wrapper = onnx.GraphProto(name="nested")
                try:
                    wrapper.node.append(helper.make_node("If", ["cond"], ["o"], then_branch=inner, else_branch=empty))
                except DecodeError:
                    break
                inner = wrapper
            node.attribute.append(helper.make_attribute("body", inner))
        elif kind == "duplicate":
            container = getattr(graph, arg)
            item = _pick(container, index)
            if item is not None:
                container.add().CopyFrom(item)


@st.composite
def field_mutants(draw):
    name = draw(st.sampled_from(["mlp", "cnn", "misc", "external"]))
    return name, draw(st.lists(_field_mutation(), min_size=1, max_size=4))


@pytest.mark.filterwarnings("ignore")
def test_field_mutations_end_in_a_result_or_a_clean_error(tmp_path):
    path = tmp_path / "model.onnx"
    seeds = {name: build() for name, build in SEEDS.items()}
    seeds["external"] = seed_external(tmp_path)

    @_settings()
    @seed(int(FUZZ_SEED) + 1 if FUZZ_SEED.isdigit() else 1)
    @given(field_mutants())
    def run(case):
        name, mutations = case
        model = onnx.ModelProto()
        model.CopyFrom(seeds[name])
        try:
            apply_fields(model, mutations)
            data = model.SerializeToString()
        except (ValueError, RecursionError, DecodeError):
            return  # protobuf itself refuses to write it: not an input anyone can hand us
        path.write_bytes(data)
        check_input(path)

    run()


def test_seed_models_lint_cleanly(tmp_path):
    """The fuzzer's starting points are valid models, so mutations explore near real inputs."""
    for name, build in SEEDS.items():
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(build().SerializeToString())
        result = lint_target(str(path), OPTIONS)
        assert result.error is None and result.graph.weighted_layers(), (name, result.error)
    path = tmp_path / "external.onnx"
    path.write_bytes(seed_external(tmp_path).SerializeToString())
    result = lint_target(str(path), OPTIONS)
    assert result.error is None and result.graph.tensors["w1"].stats.count == 16 * 32


# --- regression fixtures and the CLI under resource limits --------------------------------------


def test_regression_fixtures(tmp_path):
    fixtures = sorted(FIXTURES.glob("*.onnx"))
    assert fixtures, "tests/fixtures_fuzz/ holds the inputs that once crashed the loader"
    for fixture in fixtures:
        check_input(fixture)


def _limited():
    # 3 GiB of address space: numpy/onnx need ~1 GiB of mappings; a runaway allocation fails.
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def test_cli_under_memory_limit_gives_exit_2_and_one_line(tmp_path):
    """A sample of hostile inputs through the real command: no traceback, exit 0/1 or 2, bounded memory."""
    rng = np.random.default_rng(7)
    paths = sorted(FIXTURES.glob("*.onnx"))
    for i in range(6):
        data = apply_bytes(SEED_BYTES["cnn"], [("flip", int(rng.integers(0, len(SEED_BYTES["cnn"]))), int(rng.integers(0, 8)))])
        path = tmp_path / f"flip{i}.onnx"
        path.write_bytes(data)
        paths.append(path)
    for i, size in enumerate([10**12, 2**40]):
        model = seed_mlp()
        model.graph.initializer[0].ClearField("dims")
        model.graph.initializer[0].dims.extend([size, 4])
        path = tmp_path / f"huge{i}.onnx"
        path.write_bytes(model.SerializeToString())
        paths.append(path)
    good = tmp_path / "good.onnx"
    good.write_bytes(SEED_BYTES["mlp"])
    paths.insert(0, good)
    env = {k: v for k, v in os.environ.items() if k != "INITLINT_DEBUG"}
    out = subprocess.run(
        [sys.executable, "-m", "initlint", "--probe", "never", "--format", "json", *map(str, paths)],
        capture_output=True, text=True, timeout=120, preexec_fn=_limited, env=env,
    )
    assert "Traceback" not in out.stdout + out.stderr
    assert out.returncode == 2, out.stderr
    results = {r["target"]: r for r in json.loads(out.stdout)["results"]}
    assert len(results) == len(paths)
    assert results[str(good)]["error"] is None  # one bad file does not hide the others
    for path in paths[-2:]:
        error = results[str(path)]["error"]
        assert error.startswith(str(path)) and "declares" in error and "\n" not in error
