"""Loading a model file never runs code from it, and a hostile or broken file is a one-line error.

Payloads here would create a file when unpickled; the tests check that the file does not appear
unless --trust-pickle is given (and that it does appear with it, so the payload is real).
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile

import pytest

from cli_checks import assert_one_line_error as _assert_one_line_error
from cli_checks import lint as _lint
from initlint.loaders import archive

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated, still shipped


class CreatesFile:
    """Unpickling this object opens (creates) ``path`` for writing."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))




def _tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


@pytest.fixture(scope="module")
def pt2_bytes():
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(_tiny_model(), (torch.randn(2, 4),)), buffer)
    return buffer.getvalue()


def _rewrite_zip(data: bytes, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None) -> bytes:
    """Copy an archive, replacing members whose name ends with a key of ``replace``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            payload = source.read(info)
            for suffix, new in (replace or {}).items():
                if info.filename.endswith(suffix):
                    payload = new
            target.writestr(info.filename, payload)
        for name, payload in (add or {}).items():
            target.writestr(name, payload)
    return out.getvalue()


def _evil_torch_save(marker, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(CreatesFile(marker), buffer, **kwargs)
    return buffer.getvalue()


# --- pickles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["torch.save", "torch.save legacy", "pickle.dumps"])
def test_malicious_pickle_runs_only_with_trust_pickle(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    if writer == "torch.save":
        path.write_bytes(_evil_torch_save(marker))
    elif writer == "torch.save legacy":
        path.write_bytes(_evil_torch_save(marker, _use_new_zipfile_serialization=False))
    else:
        path.write_bytes(pickle.dumps(CreatesFile(marker)))
    result = _lint(path)
    _assert_one_line_error(result, path, "--trust-pickle", "arbitrary code")
    assert not marker.exists(), "the pickle ran without --trust-pickle"

    trusted = _lint(path, "--trust-pickle")
    assert marker.exists(), "with --trust-pickle the payload is unpickled (the test payload is real)"
    _assert_one_line_error(trusted, path)  # what it unpickled is no model


def test_pt2_with_pickled_sample_inputs_is_refused(tmp_path, pt2_bytes):
    """torch.export.load falls back to weights_only=False for sample inputs: the payload would run."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt2"
    path.write_bytes(_rewrite_zip(pt2_bytes, replace={"data/sample_inputs/model.pt": _evil_torch_save(marker)}))
    _assert_one_line_error(_lint(path), path, "refused", "--trust-pickle")
    assert not marker.exists()
    _lint(path, "--trust-pickle")
    assert marker.exists(), "torch.export.load does unpickle this member: refusing it is what kept it safe"


def test_pt2_with_a_pickled_weight_is_refused(tmp_path, pt2_bytes):
    with zipfile.ZipFile(io.BytesIO(pt2_bytes)) as source:
        config_name = next(n for n in source.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(source.read(config_name))
    first = next(iter(config["config"]))
    config["config"][first]["use_pickle"] = True
    path = tmp_path / "pickled_weight.pt2"
    path.write_bytes(_rewrite_zip(pt2_bytes, replace={"model_weights_config.json": json.dumps(config).encode()}))
    _assert_one_line_error(_lint(path), path, "refused", repr(first), "pickled")


def test_pt2_with_compiled_code_is_refused(tmp_path, pt2_bytes):
    root = zipfile.ZipFile(io.BytesIO(pt2_bytes)).namelist()[0].split("/")[0]
    path = tmp_path / "aoti.pt2"
    path.write_bytes(_rewrite_zip(pt2_bytes, add={f"{root}/data/aotinductor/model/model.so": b"\x7fELF"}))
    _assert_one_line_error(_lint(path), path, "compiled code")


def test_torchscript_load_does_not_run_a_pickle_payload(tmp_path):
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(_tiny_model()), buffer)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(CreatesFile(marker), protocol=2)
    path = tmp_path / "evil_ts.pt"
    path.write_bytes(_rewrite_zip(buffer.getvalue(), replace={"/data.pkl": evil}))
    _assert_one_line_error(_lint(path), path, "TorchScript")
    assert not marker.exists()


class _WritesFiles(torch.nn.Module):
    """Its scripted __setstate__, which torch.jit.load runs, fills the first 8 bytes of
    ``victim`` and creates ``marker`` (torch.from_file with shared=True writes through)."""

    def __init__(self, victim: str, marker: str):
        super().__init__()
        self.victim, self.marker = victim, marker
        self.touched = torch.zeros(1)

    @torch.jit.export
    def __getstate__(self) -> tuple[str, str, bool]:
        return (self.victim, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, str, bool]) -> None:
        self.victim, self.marker, self.training = state[0], state[1], state[2]
        # Kept in an attribute: TorchScript drops a call whose result nothing uses.
        self.touched = torch.from_file(self.victim, shared=True, size=8, dtype=torch.uint8).fill_(88)
        self.touched = torch.from_file(self.marker, shared=True, size=8, dtype=torch.uint8).fill_(77)

    def forward(self, x):
        return x


def test_torchscript_code_runs_only_with_trust_code(tmp_path):
    victim, marker, path = tmp_path / "victim.txt", tmp_path / "marker", tmp_path / "writes_files.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(2, 2), _WritesFiles(str(victim), str(marker)))).save(str(path))
    marker.unlink(missing_ok=True)  # saving does not run __setstate__; be sure anyway
    victim.write_text("original text\n")
    _assert_one_line_error(_lint(path), path, "refused", "TorchScript", "runs the code it carries", "--trust-code")
    assert not marker.exists(), "the archive's code ran without --trust-code"
    assert victim.read_text() == "original text\n"
    trusted = _lint(path, "--trust-code")
    assert trusted.exit_code == 0, trusted.output
    assert marker.exists() and victim.read_bytes().startswith(b"X" * 8), "with --trust-code the code runs (the test payload is real)"


def test_clean_pt2_loads_with_the_pickle_checks(tmp_path, pt2_bytes):
    path = tmp_path / "clean.pt2"
    path.write_bytes(pt2_bytes)
    result = _lint(path, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"][0]["format"] == "pt2"


# --- zip archives ----------------------------------------------------------------------------


def _declare_huge_member(data: bytes) -> bytes:
    """Patch the central directory so the first member declares ~4 GB uncompressed."""
    end = data.rindex(b"PK\x05\x06")  # end of central directory record
    central = struct.unpack_from("<I", data, end + 16)[0]
    assert data[central : central + 4] == b"PK\x01\x02"
    return data[: central + 24] + struct.pack("<I", 0xFFFFFFF0) + data[central + 28 :]


@pytest.mark.parametrize("suffix", [".pt2", ".pt"])
def test_zip_bomb_is_refused_before_torch_reads_it(tmp_path, pt2_bytes, suffix):
    path = tmp_path / f"bomb{suffix}"
    path.write_bytes(_declare_huge_member(pt2_bytes))
    _assert_one_line_error(_lint(path), path, "refused", "uncompressed bytes")


@pytest.mark.parametrize("member", ["../escape.txt", "/etc/escape.txt", "model/..\\..\\escape.txt"])
@pytest.mark.parametrize("suffix", [".pt2", ".pt"])
def test_member_outside_the_archive_is_refused(tmp_path, pt2_bytes, member, suffix):
    path = tmp_path / f"traversal{suffix}"
    path.write_bytes(_rewrite_zip(pt2_bytes, add={member: b"x"}))
    _assert_one_line_error(_lint(path), path, "refused", "outside the archive")


def test_too_many_members_is_refused(tmp_path, pt2_bytes, monkeypatch):
    monkeypatch.setattr(archive, "MAX_MEMBERS", 10)  # the real limit, 100,000 members, is slow to build
    path = tmp_path / "crowded.pt2"
    path.write_bytes(pt2_bytes)
    _assert_one_line_error(_lint(path), path, "refused", "members")


def test_member_names_safety():
    assert archive.is_safe_member_name("model/data/weights/weight_0")
    for bad in ("../x", "a/../../x", "/abs", "C:/x", "a\\..\\x", "", "a\x00b"):
        assert not archive.is_safe_member_name(bad), bad


# --- corrupt and truncated files of every format ---------------------------------------------


def _state_dict_bytes(**kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(_tiny_model().state_dict(), buffer, **kwargs)
    return buffer.getvalue()


def _torchscript_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(_tiny_model()), buffer)
    return buffer.getvalue()


def _safetensors(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _valid_safetensors() -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in _tiny_model().state_dict().items()})


CORRUPT = {
    "truncated.pt2": lambda pt2: pt2[: len(pt2) // 2],
    "random.pt2": lambda pt2: bytes(range(256)) * 8,
    "empty.pt2": lambda pt2: b"",
    "truncated_ts.pt": lambda pt2: _torchscript_bytes()[:700],
    "truncated_sd.pt": lambda pt2: _state_dict_bytes()[:-300],
    "truncated_legacy.pth": lambda pt2: _state_dict_bytes(_use_new_zipfile_serialization=False)[:200],
    "random.pt": lambda pt2: b"\x80\x02garbage" * 40,
    "truncated.safetensors": lambda pt2: _valid_safetensors()[:-50],
    "tiny.safetensors": lambda pt2: b"\x01\x02",
    "huge_header.safetensors": lambda pt2: struct.pack("<Q", 2**62) + b"{}",
    "bad_json.safetensors": lambda pt2: struct.pack("<Q", 5) + b"{oops",
    # 40-odd bytes that claim a 10^12-element tensor: an error, not an allocation
    "huge_claim.safetensors": lambda pt2: _safetensors({"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}}),
    "mismatch.safetensors": lambda pt2: _safetensors({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]}}, b"\0" * 8),
    "bad_dtype.safetensors": lambda pt2: _safetensors({"w": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
    "negative.safetensors": lambda pt2: _safetensors({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
    "not_object.safetensors": lambda pt2: _safetensors([1, 2, 3]),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_file_is_a_one_line_error(tmp_path, pt2_bytes, name):
    path = tmp_path / name
    path.write_bytes(CORRUPT[name](pt2_bytes))
    _assert_one_line_error(_lint(path), path)


def test_bad_file_does_not_hide_other_results(tmp_path, pt2_bytes):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x01\x02")
    good = tmp_path / "good.pt2"
    good.write_bytes(pt2_bytes)
    result = _lint(bad, good)
    assert result.exit_code == 2
    assert "in 2 models; 1 could not be read" in result.output


# --- safetensors headers: any mutation ends in a graph or an InitlintError -------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from initlint.errors import InitlintError  # noqa: E402
from initlint.loaders.safetensors_reader import load_safetensors  # noqa: E402

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
_ENTRIES = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "X"]) | _JSON_VALUES,
        "shape": st.lists(st.integers(-2, 2**40), max_size=4) | _JSON_VALUES,
        "data_offsets": st.lists(st.integers(-8, 2**40), max_size=3) | _JSON_VALUES,
    },
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.dictionaries(st.text(max_size=8), _ENTRIES | _JSON_VALUES, max_size=4), data=st.binary(max_size=64), cut=st.integers(0, 200))
def test_safetensors_mutations_never_crash(tmp_path, header, data, cut):
    path = tmp_path / "fuzz.safetensors"
    blob = _safetensors(header, data)
    path.write_bytes(blob[: len(blob) - cut] if cut % 3 == 0 else blob)
    try:
        graph = load_safetensors(str(path))
    except InitlintError as error:
        assert "\n" not in str(error)
        return
    for tensor in graph.tensors.values():  # every declared tensor is readable from the bytes present
        assert tensor.values().size == tensor.size
