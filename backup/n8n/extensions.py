"""Custom and community nodes: archived with a snapshot, unpacked safely into a restored folder.

n8n loads community packages from ``.n8n/nodes`` (installed by n8n itself, recorded in its
``installed_packages`` table), custom nodes from ``.n8n/custom`` and from the folders listed in
``N8N_CUSTOM_EXTENSIONS``. One archive holds them: ``custom/``, ``nodes/`` and
``extensions/<n>/`` for the n-th extension folder. An archive is untrusted input: it is unpacked
only after every member was checked (no absolute path, no ``..``, no device, no hard link, no
link leading out of its folder).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import zlib
from collections.abc import Mapping
from pathlib import Path

from backup.atomic import PRIVATE_FILE_MODE, fsync_file
from backup.errors import SnapshotError, SourceError

ARCHIVE_NAME = "custom-nodes.tar.gz"
NODE_FOLDERS = ("custom", "nodes")
EXTENSIONS_ENV = "N8N_CUSTOM_EXTENSIONS"
EXTENSIONS_DIR = "extensions"
TOP_LEVEL = frozenset({*NODE_FOLDERS, EXTENSIONS_DIR})
MAX_MEMBERS = 500_000
MAX_UNPACKED_BYTES = 8 << 30


def extension_folders(environ: Mapping[str, str]) -> list[Path]:
    """The folders ``N8N_CUSTOM_EXTENSIONS`` names (n8n separates them with ``;``)."""
    raw = environ.get(EXTENSIONS_ENV, "")
    return [Path(part.strip()) for part in raw.split(";") if part.strip()]


def write_archive(n8n_folder: Path | None, extensions: list[Path], archive: Path) -> list[str]:
    """Archive the node folders that exist into ``archive`` (atomically, 0600); return their
    names in the archive (none: nothing written). ``n8n_folder`` is None for n8n on PostgreSQL
    without a data folder. Links are archived as links, never followed (n8n's folder is
    writable by n8n).

    Raises SourceError when the archive would be refused on restore (a link leading out of
    its folder, a hard link), and OSError when a file cannot be read.
    """
    sources = [
        (n8n_folder / name, name)
        for name in NODE_FOLDERS
        if n8n_folder is not None and (n8n_folder / name).is_dir()
    ]
    sources += [
        (folder, f"{EXTENSIONS_DIR}/{index}")
        for index, folder in enumerate(extensions)
        if folder.is_dir()
    ]
    if not sources:
        return []
    temporary = archive.with_name(f".{archive.name}.tmp")
    with tarfile.open(temporary, "w:gz") as tar:
        for source, arcname in sources:
            tar.add(source, arcname=arcname)
    problems = archive_problems(temporary)
    if problems:  # a snapshot that its own restore would refuse is no snapshot
        temporary.unlink()
        raise SourceError(
            f"custom or community nodes cannot be archived safely: {problems[0]}; replace "
            "links that leave their folder (npm link) and hard links with copies"
        )
    temporary.chmod(PRIVATE_FILE_MODE)
    fsync_file(temporary)
    temporary.rename(archive)
    return [arcname for _, arcname in sources]


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Why one archive member must not be unpacked, or None."""
    name = member.name
    parts = name.split("/")
    if name.startswith("/") or os.path.isabs(name):
        return f"{name!r} is an absolute path"
    if ".." in parts:
        return f"{name!r} climbs out with '..'"
    if parts[0] not in TOP_LEVEL:
        return f"{name!r} is outside {sorted(TOP_LEVEL)}"
    if member.islnk():
        return f"{name!r} is a hard link"
    if not (member.isfile() or member.isdir() or member.issym()):
        return f"{name!r} is a device, a pipe or another special file"
    if member.issym():
        target = member.linkname
        if target.startswith("/"):
            return f"link {name!r} points to the absolute path {target!r}"
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if resolved.split("/")[0] != parts[0] or resolved.startswith(".."):
            return f"link {name!r} leads out of {parts[0]}/ ({target!r})"
    return None


def archive_problems(archive: Path) -> list[str]:
    """Everything that keeps ``archive`` from being unpacked safely (empty when none)."""
    problems: list[str] = []
    total = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    return [f"holds more than {MAX_MEMBERS} entries"]
                total += max(member.size, 0)
                if total > MAX_UNPACKED_BYTES:
                    return [f"unpacks to more than {MAX_UNPACKED_BYTES >> 30} GiB"]
                problem = _member_problem(member)
                if problem:
                    problems.append(problem)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        return [f"is not a readable tar.gz archive ({type(exc).__name__})"]
    return problems


def unpack(archive: Path, n8n_folder: Path, *, extensions_into_custom: bool = True) -> list[str]:
    """Unpack a checked archive into ``n8n_folder`` (a restored ``.n8n``); return the top-level
    entries restored. Extension folders go under ``custom/``, which n8n searches the same way
    (a throwaway instance), or are left out (a production restore: n8n still loads them from
    their own folders).

    Raises SnapshotError naming the first problem; nothing is unpacked then.
    """
    problems = archive_problems(archive)
    if problems:
        raise SnapshotError(f"{ARCHIVE_NAME} is refused: {problems[0]}")
    staging = n8n_folder / ".unpacking-nodes"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staging, filter="data")  # a second guard behind the checks above
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SnapshotError(f"{ARCHIVE_NAME} does not unpack: {type(exc).__name__}") from None
    restored = []
    for name in NODE_FOLDERS:
        if (staging / name).is_dir():
            (staging / name).rename(n8n_folder / name)
            restored.append(name)
    extensions = staging / EXTENSIONS_DIR
    if extensions.is_dir() and extensions_into_custom:
        custom = n8n_folder / "custom"
        custom.mkdir(exist_ok=True)
        for folder in sorted(extensions.iterdir()):
            folder.rename(custom / f"extension-{folder.name}")
            restored.append(f"{EXTENSIONS_DIR}/{folder.name}")
    shutil.rmtree(staging, ignore_errors=True)
    return restored
