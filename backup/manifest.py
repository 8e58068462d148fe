"""The manifest: what a snapshot holds, and the digests that prove what came back.

A manifest is untrusted input until it is authenticated: ``Manifest.from_dict`` accepts only
values of the exact shape this tool writes (contained relative paths, plain identifiers, hex
digests, ISO times with a timezone), and ``authenticate`` checks its MAC, keyed from the
encryption key, before anything in it is believed.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from backup.digests import ROW_HASH_HEX_CHARS, manifest_mac
from backup.errors import SnapshotError
from backup.identifiers import schema_problem, table_prefix_problem
from backup.n8n.binary_data import PATH_PATTERN as BINARY_PATH
from backup.n8n.binary_data import BinaryFile
from backup.n8n.entities import NAMES as ENTITY_NAMES

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "n8n-restore-verify/snapshot"
FORMAT_VERSION = 2
MAC_FIELD = "mac"
# The database file a snapshot holds, by kind: fixed names, never taken from the manifest.
DATABASE_FILES = {"sqlite": "database.sqlite", "postgres": "database.dump"}
WORKFLOWS_DIR = "workflows"
MAX_MANIFEST_BYTES = 256 << 20
MAX_COUNT = 10**12

_SAFE_PART = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}"
_RELATIVE_PATH = re.compile(rf"{_SAFE_PART}(?:/{_SAFE_PART})?")
_EXPORT_FILE = re.compile(rf"{WORKFLOWS_DIR}/{_SAFE_PART}\.json")
_SNAPSHOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION = re.compile(r"\d{1,4}\.\d{1,4}\.\d{1,6}(?:[-+][0-9A-Za-z.-]{1,40})?")
_FINGERPRINT = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_WORKFLOW_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CREDENTIAL_DIGEST = re.compile(r"hmac-sha256:[0-9a-f]{64}")
_MAC = re.compile(r"hmac-sha256:[0-9a-f]{64}")
_SERVER_VERSION = re.compile(r"\d{1,3}(?:\.\d{1,4}){0,2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PACKAGE_NAME = re.compile(r"(?:@[a-z0-9][a-z0-9._~-]{0,100}/)?[a-z0-9][a-z0-9._~-]{0,213}")
_BINARY_PATH = re.compile(BINARY_PATH)
INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")
_ROW_HASH = re.compile(rf"[0-9a-f]{{{ROW_HASH_HEX_CHARS}}}")
_NODE_FOLDER = re.compile(r"custom|nodes|extensions/\d{1,3}")


@dataclass(frozen=True)
class FileEntry:
    """One file of the snapshot, relative to the snapshot folder."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class WorkflowEntry:
    """One workflow as it is in the database copy."""

    id: str
    name: str
    active: bool
    digest: str
    export_file: str | None = None


@dataclass(frozen=True)
class CredentialEntry:
    """One credential; ``digest`` is keyed with the encryption key (see backup.digests)."""

    id: str
    name: str
    type: str
    digest: str


@dataclass(frozen=True)
class PackageEntry:
    """A community node package the source n8n had installed, and its node types."""

    name: str
    version: str
    node_types: list[str]


@dataclass(frozen=True)
class EntityEntry:
    """The entities of one kind (tags, users, ...) the snapshot holds: one keyed hash per row
    (see backup.n8n.entities and backup.digests.entity_row_hash)."""

    rows: list[str]
    # Row hash -> how a report names the row (kinds with a name: tags, variables by key, ...).
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """How many the snapshot holds."""
        return len(self.rows)


@dataclass(frozen=True)
class BinaryData:
    """The execution binary files the copied executions refer to, and those not found."""

    files: list[BinaryFile]
    missing: list[str]  # the first ones, up to MAX_LISTED_MISSING
    missing_count: int


@dataclass(frozen=True)
class Counts:
    """Row counts read from the database copy."""

    workflows: int
    credentials: int
    executions: int


@dataclass(frozen=True)
class Manifest:
    """Everything verify needs to know about a snapshot, except the encryption key itself."""

    snapshot_id: str
    created: str
    source_n8n_version: str
    database_kind: str
    database_file: str
    key_fingerprint: str
    counts: Counts
    workflows: list[WorkflowEntry]
    credentials: list[CredentialEntry]
    files: list[FileEntry] = field(default_factory=list)
    table_prefix: str = ""
    database_schema: str | None = None  # PostgreSQL only
    database_server_version: str | None = None  # PostgreSQL only: the source server's version
    # --force took the snapshot while this many executions were running.
    forced_with_running_executions: int = 0
    community_packages: list[PackageEntry] = field(default_factory=list)
    # What the node archive holds: "custom", "nodes", "extensions/<n>" (N8N_CUSTOM_EXTENSIONS).
    node_folders: list[str] = field(default_factory=list)
    # Kind name -> count and digest; kinds the source's n8n version has no table for are absent.
    entities: dict[str, EntityEntry] = field(default_factory=dict)
    binary_data: BinaryData | None = None  # None: no execution refers to binary files
    # Which n8n this is a snapshot of (--instance; default: the API URL's host and port).
    instance: str | None = None
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def body(self) -> dict[str, Any]:
        """The manifest as the JSON object it is written as, without its MAC."""
        body = asdict(self)
        header = {"format": body.pop("format"), "format_version": body.pop("format_version")}
        return {**header, **body}

    def to_json(self, encryption_key: str) -> str:
        """Indented JSON (stable key order, for diffs and auditors) with a MAC over the rest,
        keyed from ``encryption_key``: whoever holds only the snapshot cannot forge it."""
        body = self.body()
        body[MAC_FIELD] = manifest_mac(body, encryption_key)
        return json.dumps(body, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        """Build a Manifest from parsed JSON; raise SnapshotError naming the first bad field."""
        if raw.get("format") != FORMAT_NAME:
            raise SnapshotError("manifest.json is not an n8n-restore-verify manifest")
        if raw.get("format_version") != FORMAT_VERSION:
            raise SnapshotError(
                f"manifest format version {_shown(raw.get('format_version'))} is not supported "
                f"(this tool reads version {FORMAT_VERSION}): take a new snapshot with this tool"
            )
        return _ManifestReader(raw).read()

    @classmethod
    def load(cls, snapshot_dir: Path) -> Manifest:
        """Read and validate ``snapshot_dir/manifest.json`` (not yet authenticated)."""
        return cls.from_dict(read_manifest_json(snapshot_dir))


def read_manifest_json(snapshot_dir: Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a folder: a regular file (never a link), a JSON object."""
    path = snapshot_dir / MANIFEST_NAME
    try:
        info = os.lstat(path)
    except OSError:
        raise SnapshotError(
            f"{snapshot_dir} is not a snapshot: it has no {MANIFEST_NAME}"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise SnapshotError(f"{path} is not a regular file (a link or a folder): not a snapshot")
    if info.st_size > MAX_MANIFEST_BYTES:
        raise SnapshotError(f"{path} is {info.st_size} bytes, more than any manifest: not trusted")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"cannot read {path}: {exc}") from None
    except RecursionError:
        raise SnapshotError(f"{path} is nested deeper than any manifest: not trusted") from None
    if not isinstance(raw, dict):
        raise SnapshotError(f"{path} does not hold a JSON object")
    return raw


def authenticate(snapshot_dir: Path, encryption_key: str) -> Manifest:
    """The snapshot's manifest, once its MAC proves it was written with ``encryption_key``.

    Raises SnapshotError saying why it is not authentic.
    """
    raw = read_manifest_json(snapshot_dir)
    manifest = Manifest.from_dict(raw)
    claimed = raw.pop(MAC_FIELD, None)
    if claimed is None:
        raise SnapshotError("manifest.json carries no MAC: it cannot be authenticated")
    if not isinstance(claimed, str) or not _MAC.fullmatch(claimed):
        raise SnapshotError("manifest.json has a MAC of an unexpected form: not authentic")
    if not hmac.compare_digest(claimed, manifest_mac(raw, encryption_key)):
        raise SnapshotError(
            f"manifest.json does not match its MAC under encryption key "
            f"{manifest.key_fingerprint}: the manifest was altered, or the key is not this "
            "snapshot's"
        )
    return manifest


def find_snapshots(root: Path) -> list[Path]:
    """Snapshot folders directly under ``root`` (or ``root`` itself), oldest name first.

    Folders whose names start with a dot are in-progress or abandoned writes and are ignored.
    """
    if (root / MANIFEST_NAME).is_file():
        return [root]
    return sorted(
        child
        for child in root.iterdir()
        if child.is_dir() and not child.name.startswith(".") and (child / MANIFEST_NAME).is_file()
    )


def parse_created(value: str) -> datetime:
    """A manifest's ``created`` as an aware datetime; ValueError when it is not one."""
    try:
        moment = datetime.fromisoformat(value)
        moment.astimezone(UTC)  # an offset that pushes it out of range
    except OverflowError:
        raise ValueError("out of range") from None
    if moment.utcoffset() is None:
        raise ValueError("no timezone")
    return moment


def _shown(value: object) -> str:
    """A short, printable rendering of an untrusted value for a message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _ManifestReader:
    """Field-by-field validation of an untrusted manifest object."""

    _KNOWN = frozenset(
        {
            "format",
            "format_version",
            "snapshot_id",
            "created",
            "source_n8n_version",
            "database_kind",
            "database_file",
            "key_fingerprint",
            "counts",
            "workflows",
            "credentials",
            "files",
            "table_prefix",
            "database_schema",
            "database_server_version",
            "forced_with_running_executions",
            "community_packages",
            "node_folders",
            "entities",
            "binary_data",
            "instance",
            MAC_FIELD,
        }
    )

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def read(self) -> Manifest:
        unknown = sorted(str(key) for key in self.raw if key not in self._KNOWN)
        if unknown:
            self._fail("manifest", f"has fields this tool never writes: {unknown[:3]}")
        raw = self.raw
        kind = self._choice("database_kind", raw.get("database_kind"), DATABASE_FILES)
        database_file = self._choice(
            "database_file", raw.get("database_file"), {DATABASE_FILES[kind]}
        )
        prefix = raw.get("table_prefix", "")
        problem = table_prefix_problem(prefix)
        if kind == "postgres":
            problem = problem or schema_problem(raw.get("database_schema"))
        if problem:
            raise SnapshotError(f"manifest.json is malformed: {problem}")
        schema = raw.get("database_schema")
        if kind == "sqlite" and schema is not None:
            self._fail("database_schema", "is set for a SQLite snapshot")
        files = [self._file(item, i) for i, item in enumerate(self._list("files"))]
        paths = [entry.path for entry in files]
        if len(set(paths)) != len(paths):
            self._fail("files", "lists a path twice")
        created = self._text("created", raw.get("created"), 64)
        try:
            parse_created(created)
        except ValueError:
            self._fail("created", f"{_shown(created)} is not an ISO-8601 time with a timezone")
        counts = raw.get("counts")
        if not isinstance(counts, dict) or set(counts) != {
            "workflows",
            "credentials",
            "executions",
        }:
            self._fail("counts", "is not {workflows, credentials, executions}")
        return Manifest(
            snapshot_id=self._match("snapshot_id", raw.get("snapshot_id"), _SNAPSHOT_ID),
            created=created,
            source_n8n_version=self._match(
                "source_n8n_version", raw.get("source_n8n_version"), _VERSION
            ),
            database_kind=kind,
            database_file=database_file,
            key_fingerprint=self._match(
                "key_fingerprint", raw.get("key_fingerprint"), _FINGERPRINT
            ),
            counts=Counts(*(self._count(f"counts.{k}", counts[k]) for k in Counts.__annotations__)),
            workflows=[self._workflow(item, i) for i, item in enumerate(self._list("workflows"))],
            credentials=[
                self._credential(item, i) for i, item in enumerate(self._list("credentials"))
            ],
            files=files,
            table_prefix=prefix,
            database_schema=schema,
            database_server_version=self._server_version(kind),
            forced_with_running_executions=self._count(
                "forced_with_running_executions", raw.get("forced_with_running_executions", 0)
            ),
            community_packages=[
                self._package(item, i)
                for i, item in enumerate(self._list("community_packages", optional=True))
            ],
            node_folders=[
                self._match(f"node_folders[{i}]", item, _NODE_FOLDER)
                for i, item in enumerate(self._list("node_folders", optional=True))
            ],
            entities=self._entities(),
            binary_data=self._binary_data(),
            instance=(
                self._match("instance", self.raw["instance"], INSTANCE_NAME)
                if self.raw.get("instance") is not None
                else None
            ),
        )

    def _binary_data(self) -> BinaryData | None:
        value = self.raw.get("binary_data")
        if value is None:
            return None
        item = self._object("binary_data", value, {"files", "missing", "missing_count"}, set())
        if not isinstance(item["files"], list) or not isinstance(item["missing"], list):
            self._fail("binary_data", "does not list files and missing ones")
        files = []
        for index, entry in enumerate(item["files"]):
            name = f"binary_data.files[{index}]"
            raw = self._object(name, entry, {"path", "sha256", "size"}, set())
            files.append(
                BinaryFile(
                    path=self._match(f"{name}.path", raw["path"], _BINARY_PATH),
                    sha256=self._match(f"{name}.sha256", raw["sha256"], _SHA256),
                    size=self._count(f"{name}.size", raw["size"]),
                )
            )
        return BinaryData(
            files=files,
            missing=[
                self._match(f"binary_data.missing[{i}]", path, _BINARY_PATH)
                for i, path in enumerate(item["missing"])
            ],
            missing_count=self._count("binary_data.missing_count", item["missing_count"]),
        )

    def _entities(self) -> dict[str, EntityEntry]:
        value = self.raw.get("entities", {})
        if not isinstance(value, dict):
            self._fail("entities", "is not an object")
        entries = {}
        for name, item in value.items():
            if name not in ENTITY_NAMES:
                self._fail("entities", f"names a kind this tool never writes: {_shown(name)}")
            entry = self._object(f"entities.{name}", item, {"rows", "labels"}, set())
            if not isinstance(entry["rows"], list) or not isinstance(entry["labels"], dict):
                self._fail(f"entities.{name}", "does not hold a list of rows and their labels")
            rows = [
                self._match(f"entities.{name}.rows[{i}]", row, _ROW_HASH)
                for i, row in enumerate(entry["rows"])
            ]
            labels = {
                self._match(f"entities.{name}.labels", row, _ROW_HASH): self._text(
                    f"entities.{name}.labels", label, 512, plain=False
                )
                for row, label in entry["labels"].items()
            }
            entries[name] = EntityEntry(rows=rows, labels=labels)
        return entries

    def _server_version(self, kind: str) -> str | None:
        value = self.raw.get("database_server_version")
        if value is None:
            return None
        if kind != "postgres":
            self._fail("database_server_version", "is set for a SQLite snapshot")
        return self._match("database_server_version", value, _SERVER_VERSION)

    def _fail(self, name: str, problem: str) -> NoReturn:
        raise SnapshotError(f"manifest.json is malformed: {name} {problem}")

    def _list(self, name: str, *, optional: bool = False) -> list[Any]:
        value = self.raw.get(name, [] if optional else None)
        if not isinstance(value, list):
            self._fail(name, "is not a list")
        return value

    def _object(self, name: str, value: Any, keys: set[str], optional: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict) or not keys <= set(value) <= keys | optional:
            self._fail(name, f"is not an object with exactly {sorted(keys)}")
        return value

    def _text(self, name: str, value: Any, limit: int, *, plain: bool = True) -> str:
        """A non-empty text; ``plain`` ones (ids, types, times) hold no control character."""
        if not isinstance(value, str) or not value or len(value) > limit:
            self._fail(name, f"is not a text of 1 to {limit} characters: {_shown(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self._fail(name, "is not valid Unicode text")
        if "\x00" in value or (plain and _CONTROL.search(value)):
            self._fail(name, "holds control characters")
        return value

    def _match(self, name: str, value: Any, pattern: re.Pattern[str]) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            self._fail(name, f"has an unexpected form: {_shown(value)}")
        return value

    def _choice(self, name: str, value: Any, allowed: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            self._fail(name, f"is {_shown(value)}, not one of {sorted(allowed)}")
        return value

    def _count(self, name: str, value: Any) -> int:
        if type(value) is not int or not 0 <= value <= MAX_COUNT:
            self._fail(name, f"is not a count: {_shown(value)}")
        return value

    def _file(self, value: Any, index: int) -> FileEntry:
        name = f"files[{index}]"
        item = self._object(name, value, {"path", "sha256", "size"}, set())
        return FileEntry(
            path=self._match(f"{name}.path", item["path"], _RELATIVE_PATH),
            sha256=self._match(f"{name}.sha256", item["sha256"], _SHA256),
            size=self._count(f"{name}.size", item["size"]),
        )

    def _workflow(self, value: Any, index: int) -> WorkflowEntry:
        name = f"workflows[{index}]"
        item = self._object(name, value, {"id", "name", "active", "digest"}, {"export_file"})
        if not isinstance(item["active"], bool):
            self._fail(f"{name}.active", "is not true or false")
        export_file = item.get("export_file")
        if export_file is not None:
            export_file = self._match(f"{name}.export_file", export_file, _EXPORT_FILE)
        return WorkflowEntry(
            id=self._text(f"{name}.id", item["id"], 128),
            name=self._text(f"{name}.name", item["name"], 1024, plain=False),
            active=item["active"],
            digest=self._match(f"{name}.digest", item["digest"], _WORKFLOW_DIGEST),
            export_file=export_file,
        )

    def _package(self, value: Any, index: int) -> PackageEntry:
        name = f"community_packages[{index}]"
        item = self._object(name, value, {"name", "version", "node_types"}, set())
        if not isinstance(item["node_types"], list):
            self._fail(f"{name}.node_types", "is not a list")
        return PackageEntry(
            name=self._match(f"{name}.name", item["name"], _PACKAGE_NAME),
            version=self._text(f"{name}.version", item["version"], 64),
            node_types=[
                self._text(f"{name}.node_types[{i}]", kind, 256)
                for i, kind in enumerate(item["node_types"])
            ],
        )

    def _credential(self, value: Any, index: int) -> CredentialEntry:
        name = f"credentials[{index}]"
        item = self._object(name, value, {"id", "name", "type", "digest"}, set())
        return CredentialEntry(
            id=self._text(f"{name}.id", item["id"], 128),
            name=self._text(f"{name}.name", item["name"], 1024, plain=False),
            type=self._text(f"{name}.type", item["type"], 256),
            digest=self._match(f"{name}.digest", item["digest"], _CREDENTIAL_DIGEST),
        )
