"""Execution binary data in filesystem mode (N8N_DEFAULT_BINARY_DATA_MODE=filesystem).

n8n keeps each execution's files outside the database, under
``<root>/workflows/<wf>/executions/<execution>/binary_data/<uuid>`` with a ``.metadata`` file
beside each; the execution's stored data refers to them as ``filesystem-v2:<that path>``. The
root is N8N_BINARY_DATA_STORAGE_PATH when set, else ``.n8n/storage`` (2.x) or
``.n8n/binaryData`` (1.x, and 2.x on a folder that had it). A snapshot copies exactly the files
the copied execution rows refer to, so they are consistent with the database copy; a restored
n8n of either major reads them from ``.n8n/binaryData``.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from backup.atomic import PRIVATE_FILE_MODE, fsync_file
from backup.errors import SnapshotError
from backup.n8n.tables import N8nTables

ARCHIVE_NAME = "binary-data.tar"
STORAGE_ENV = "N8N_BINARY_DATA_STORAGE_PATH"
GENERAL_STORAGE_ENV = "N8N_STORAGE_PATH"  # 2.x: the root of its storage, binary data included
DEFAULT_FOLDERS = ("storage", "binaryData")
RESTORED_FOLDER = "binaryData"  # read by 1.x, and by 2.x when it exists
ID_PREFIX = "filesystem-v2:"
_SEGMENT = r"[A-Za-z0-9_-]{1,64}"
PATH_PATTERN = rf"workflows/{_SEGMENT}/executions/{_SEGMENT}/binary_data/[0-9a-f-]{{36}}"
REFERENCE = re.compile(rf"filesystem(?:-v2)?:({PATH_PATTERN})")
_MEMBER = re.compile(rf"{PATH_PATTERN}(?:\.metadata)?|workflows(?:/{_SEGMENT}){{0,4}}")
MAX_LISTED_MISSING = 100
SAMPLE_SIZE = 20


@dataclass(frozen=True)
class BinaryFile:
    """One binary file of an execution: its path under the root, sha256 and size."""

    path: str
    sha256: str
    size: int

    @property
    def n8n_id(self) -> str:
        """The id n8n's execution data and its download endpoint use."""
        return ID_PREFIX + self.path


@dataclass
class BinaryCopy:
    """What a snapshot copied, and the referenced files it did not find."""

    files: list[BinaryFile] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """The size of all copied files."""
        return sum(item.size for item in self.files)


def sample(files: list[BinaryFile], size: int = SAMPLE_SIZE) -> list[BinaryFile]:
    """Up to ``size`` files spread evenly over the list (the same ones on every run)."""
    if len(files) <= size:
        return list(files)
    step = len(files) / size
    return [files[int(index * step)] for index in range(size)]


def storage_roots(n8n_folder: Path | None, environ: Mapping[str, str]) -> list[Path]:
    """Where n8n may keep binary data, most specific first."""
    roots = [
        Path(environ[name].strip())
        for name in (STORAGE_ENV, GENERAL_STORAGE_ENV)
        if environ.get(name, "").strip()
    ]
    if n8n_folder is not None:
        roots += [n8n_folder / name for name in DEFAULT_FOLDERS]
    return roots


def referenced_paths(tables: N8nTables) -> list[str]:
    """The binary files the stored executions refer to (paths under the root, sorted)."""
    found: set[str] = set()
    for text in tables.execution_data_mentioning("filesystem"):
        found.update(REFERENCE.findall(text))
    return sorted(found)


class _Hashing:
    """A file being read into the archive, hashed on the way (one read of each file)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.hasher = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.hasher.update(data)
        return data


def _open_regular(roots: list[Path], relative: str) -> BinaryIO | None:
    """The file, opened from the first root that holds it as a regular file inside the root;
    opened once (no link as its last part) so that what is checked is what is read."""
    for root in roots:
        candidate = root / relative
        try:
            if not candidate.resolve(strict=True).is_relative_to(root.resolve()):
                continue
            descriptor = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            return os.fdopen(descriptor, "rb")
        os.close(descriptor)
    return None


def _add(tar: tarfile.TarFile, handle: BinaryIO, arcname: str) -> str:
    """Add an open file to the archive; return its sha256."""
    info = tar.gettarinfo(fileobj=handle, arcname=arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    hashing = _Hashing(handle)
    tar.addfile(info, hashing)
    return hashing.hasher.hexdigest()


def write_archive(paths: list[str], roots: list[Path], archive: Path) -> BinaryCopy:
    """Copy the referenced files (and their ``.metadata``) into ``archive`` (atomically, 0600);
    nothing is written when none is referenced. Raises OSError when a file cannot be read."""
    copy = BinaryCopy()
    if not paths:
        return copy
    temporary = archive.with_name(f".{archive.name}.tmp")
    with tarfile.open(temporary, "w") as tar:
        for relative in paths:
            handle = _open_regular(roots, relative)
            if handle is None:
                copy.missing.append(relative)
                continue
            with handle:
                size = os.fstat(handle.fileno()).st_size
                copy.files.append(BinaryFile(relative, _add(tar, handle, relative), size))
            metadata = _open_regular(roots, relative + ".metadata")
            if metadata is not None:
                with metadata:
                    _add(tar, metadata, relative + ".metadata")
    temporary.chmod(PRIVATE_FILE_MODE)
    fsync_file(temporary)
    temporary.rename(archive)
    return copy


def unpack(archive: Path, target: Path) -> Path:
    """Unpack a snapshot's binary data into ``target`` (a storage root: ``workflows/`` goes in
    it); return ``target``.

    Only regular files in n8n's layout are accepted; raises SnapshotError naming the first
    other member, before anything is unpacked.
    """
    try:
        with tarfile.open(archive, "r:") as tar:
            members = tar.getmembers()
            for member in members:
                if not (member.isfile() or member.isdir()) or not _MEMBER.fullmatch(member.name):
                    raise SnapshotError(
                        f"{ARCHIVE_NAME} is refused: {member.name[:120]!r} is not a binary "
                        "data file of n8n's layout"
                    )
            tar.extractall(target, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error, io.UnsupportedOperation) as exc:
        raise SnapshotError(f"{ARCHIVE_NAME} does not unpack: {type(exc).__name__}") from None
    return target
