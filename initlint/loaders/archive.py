"""Check a zip archive (.pt2, TorchScript, zip-format torch.save) before any library opens it.

PyTorch's own readers trust the archive's directory. A file from a pull request may be a zip
bomb (a tiny file that declares gigabytes), hold millions of members, or name members outside
the archive (``../x``, ``/etc/x``). All of that is refused here, from the central directory
alone, before a byte of member data is read.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import PurePosixPath

from ..errors import InitlintError

MAX_MEMBERS = 100_000
# PyTorch stores members uncompressed, so declared sizes match the file size; allow ordinary
# compression (a re-zipped archive) but not a bomb.
MAX_EXPANSION = 20
EXPANSION_SLACK = 64 * 2**20


def is_zip(path: str) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def check_zip(path: str) -> list[str]:
    """The member names of a zip archive that is safe to hand to PyTorch; InitlintError if not."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InitlintError(path, f"not a readable zip archive ({exc})") from None
    if len(infos) > MAX_MEMBERS:
        raise InitlintError(path, f"refused: the archive has {len(infos):,} members (at most {MAX_MEMBERS:,})")
    file_size = _file_size(path)
    declared = sum(info.file_size for info in infos)
    if declared > MAX_EXPANSION * file_size + EXPANSION_SLACK:
        raise InitlintError(
            path,
            f"refused: the archive declares {declared:,} uncompressed bytes in a {file_size:,}-byte file (a zip bomb?)",
        )
    for info in infos:
        if not is_safe_member_name(info.filename):
            raise InitlintError(path, f"refused: archive member {info.filename!r} points outside the archive")
    return [info.filename for info in infos]


def read_member(path: str, archive: zipfile.ZipFile, name: str) -> bytes:
    """One member's bytes; a corrupt member (bad header, CRC, compression) is an InitlintError."""
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError, zlib.error) as exc:
        raise InitlintError(path, f"corrupt zip archive: member {name!r} cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None


def is_safe_member_name(name: str) -> bool:
    if not name or "\x00" in name:
        return False
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return False
    return ".." not in PurePosixPath(normalized).parts


def _file_size(path: str) -> int:
    return os.path.getsize(path)


def strip_root(names: list[str]) -> list[str]:
    """Member names without the archive's top folder (``model/code/x`` -> ``code/x``), as torch reads them."""
    return [name.split("/", 1)[1] if "/" in name else name for name in names]
