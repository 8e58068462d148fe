"""The per-snapshot summary that opens the HTML report."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from backup.manifest import Manifest


@dataclass
class SnapshotSummary:
    """What an auditor wants to see first about one verified snapshot."""

    case_id: str
    snapshot_id: str = "?"
    instance: str = "?"  # the source n8n, as the snapshot names it
    created: str = "?"
    source_version: str = "?"
    target_version: str = "?"
    runtime: str = "not booted"
    isolation: str = "-"
    authenticity: str = "not checked"
    database: str = "SQLite copy"
    key_fingerprint: str = "?"
    expected_workflows: int | None = None
    expected_credentials: int | None = None
    found_workflows: int | None = None
    found_credentials: int | None = None
    active_in_snapshot: list[str] = field(default_factory=list)
    migrations_run: list[str] | None = None  # by the target n8n on the restored data
    # What those migrations changed, per workflow ("id (name)" -> changes); None: no upgrade.
    upgrade_changes: dict[str, list[str]] | None = None
    node_types: str = "not checked"  # "N used, M missing"
    node_types_missing: list[str] = field(default_factory=list)
    node_type_notes: list[str] = field(default_factory=list)  # not failures; see the check
    extensions: str = "not checked"  # community packages and custom node folders
    entities: str = "not checked"  # "kind expected/found, ..."
    binary_data: str = "not checked"
    credential_tests: str = "not run (opt-in: --test-credentials)"
    boot_seconds: float | None = None
    test_seconds: float = 0.0
    failed: list[str] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)  # "check: why", once per cause
    # A fixture's failure (first line) -> the first check it failed; its dependents only say so.
    setup_failures: dict[str, str] = field(default_factory=dict)
    passed: set[str] = field(default_factory=set)
    # Every check of the suite: only a run of all of them on a target counts as verified.
    required: frozenset[str] = frozenset()
    executions: int | None = None
    # Why the snapshot's files could not be fetched from its repository (nothing was checked).
    unfetched: str = ""

    def fill_from_manifest(self, manifest: Manifest) -> None:
        """Take what the manifest says about the snapshot."""
        self.snapshot_id = manifest.snapshot_id
        self.instance = manifest.instance or "-"
        self.created = manifest.created
        self.source_version = manifest.source_n8n_version
        self.key_fingerprint = manifest.key_fingerprint
        self.expected_workflows = manifest.counts.workflows
        self.expected_credentials = manifest.counts.credentials
        self.active_in_snapshot = [w.name for w in manifest.workflows if w.active]
        self.executions = manifest.counts.executions

    def to_wire(self) -> dict[str, Any]:
        """Plain data (no sets) for a parallel worker's report to carry to the controller."""
        data = asdict(self)
        data["passed"] = sorted(self.passed)
        data["required"] = sorted(self.required)
        return data

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> SnapshotSummary:
        """The summary a worker sent (see ``to_wire``)."""
        known = {f.name for f in fields(cls)}
        summary = cls(**{name: value for name, value in data.items() if name in known})
        summary.passed = set(summary.passed)
        summary.required = frozenset(summary.required)
        return summary

    def counts(self) -> dict[str, int | None]:
        """What was expected and found, for the machine-readable result."""
        return {
            "workflows_expected": self.expected_workflows,
            "workflows_found": self.found_workflows,
            "credentials_expected": self.expected_credentials,
            "credentials_found": self.found_credentials,
            "executions": self.executions,
            "node_types_missing": len(self.node_types_missing),
        }

    @property
    def result(self) -> str:
        """PASSED when every check of the suite ran and passed on this target; PARTIAL when
        some were left out (deselected), and none failed, or when the snapshot's files never
        came from its repository: not verified, and not shown to be broken either."""
        if self.unfetched:
            return "PARTIAL"
        if self.failed:
            return "FAILED"
        if not self.passed:
            return "NOT RUN"
        return "PASSED" if self.required <= self.passed else "PARTIAL"

    @property
    def empty(self) -> str:
        """What the snapshot has none of (an empty instance is valid, and said so)."""
        counts = {
            "workflows": self.expected_workflows,
            "credentials": self.expected_credentials,
            "executions": self.executions,
        }
        names = [name for name, count in counts.items() if count == 0]
        return ("no " + ", no ".join(names)) if names else "-"


COLUMNS = (
    "snapshot",
    "instance",
    "created",
    "source n8n",
    "target n8n",
    "manifest",
    "runtime",
    "isolation",
    "database",
    "empty",
    "workflows expected / found",
    "credentials expected / found",
    "node types",
    "community / custom nodes",
    "other entities expected / found",
    "binary data",
    "credential tests (opt-in)",
    "active in snapshot (not activated)",
    "migrations run on restore",
    "changed by the upgrade",
    "key fingerprint",
    "boot s",
    "tests s",
    "result",
)


def add_environment_fact(environment: dict[str, object], name: str, value: str | None) -> None:
    """Add ``value`` under ``name`` in the report's Environment table; several snapshots may
    bring several values (two PostgreSQL servers, say): each is listed once."""
    if not value:
        return
    said = [part for part in str(environment.get(name, "")).split(", ") if part]
    if value not in said:
        environment[name] = ", ".join([*said, value])


def plain_check_name(test_name: str) -> str:
    """``test_boot`` -> ``boot``: how a check is named to a reader."""
    return test_name.removeprefix("test_").replace("_", " ")


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _migrations(names: list[str] | None) -> str:
    if names is None:
        return "-"
    return f"{len(names)}" + (": " + ", ".join(names) if names else "")


def _changes(changes: dict[str, list[str]] | None) -> str:
    if changes is None:
        return "-"
    listed = " | ".join(f"{name}: {'; '.join(said)}" for name, said in changes.items())
    return f"{len(changes)} workflow(s)" + (f": {listed}" if listed else "")


def _node_types(item: SnapshotSummary) -> str:
    missing = item.node_types_missing
    said = item.node_types + (": " + " | ".join(missing[:10]) if missing else "")
    notes = item.node_type_notes
    return said + (f"; notes: {' | '.join(notes[:10])}" if notes else "")


def _verdict(item: SnapshotSummary) -> str:
    """The result with its first cause in one sentence; how many more checks failed."""
    if not item.causes:
        return item.result
    more = len(item.failed) - 1
    return f"{item.result}: {item.causes[0]}" + (
        f" (and {more} more failed check{'s' if more > 1 else ''})" if more > 0 else ""
    )


# Printed or saved as PDF (audits are): the summary and the run's facts on landscape pages,
# pytest-html's filters and per-test table left out, long cells wrapped.
# On paper the wide summary becomes one card per snapshot ("column: value" in four columns,
# the verdict on its own line), so that the summary of a nightly run fits an A4 page.
PRINT_CSS = """<style>
@media print {
  @page { size: A4 portrait; margin: 10mm; }
  body { font-size: 8pt; }
  .filters, .collapse, #results-table, .controls, #environment-header { display: none; }
  #snapshot-summary, #snapshot-summary tbody { display: block; border: none; }
  #snapshot-summary tr.head { display: none; }
  #snapshot-summary tr {
    display: grid; grid-template-columns: repeat(6, 1fr); border: 1px solid #888;
    margin-bottom: 2mm; break-inside: avoid;
  }
  #snapshot-summary td {
    display: block; border: none; padding: 0.2mm 1mm; font-size: 6pt; word-break: break-word;
  }
  #snapshot-summary td:nth-child(-n+2) { grid-column: 1 / -1; font-size: 8pt; }
  #snapshot-summary td:nth-child(n+3) {  /* long cells: their first lines (all on screen) */
    display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 2; overflow: hidden;
  }
  #snapshot-summary td::before { content: attr(data-label) ": "; font-weight: bold; color: #000; }
}
</style>"""


def run_facts(facts: dict[str, str]) -> str:
    """The run's facts (what, where, when, with what) as a small table."""
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in facts.items()
    )
    return f'<h2>This run</h2><table id="run-facts" border="1" cellpadding="3">{rows}</table>'


def checks_table(checks: dict[str, str]) -> str:
    """What each check proves (its docstring's first paragraph), as in the README."""
    rows = "".join(
        f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(proves)}</td></tr>"
        for name, proves in checks.items()
    )
    return (
        '<h2>What each check proves</h2><table id="checks" border="1" cellpadding="3">'
        f"<tr><th>check</th><th>proves</th></tr>{rows}</table>"
    )


def summary_table(summaries: list[SnapshotSummary]) -> str:
    """An HTML table, one row per snapshot; every value is escaped."""
    ordered = [COLUMNS[0], COLUMNS[-1], *COLUMNS[1:-1]]  # as the cells: the verdict second
    head = "".join(f"<th>{html.escape(column)}</th>" for column in ordered)
    rows = []
    for item in summaries:
        active = ", ".join(item.active_in_snapshot) or "none"
        cells = [
            item.case_id,
            item.instance,
            item.created,
            item.source_version,
            item.target_version,
            item.authenticity,
            item.runtime,
            item.isolation,
            item.database,
            item.empty,
            f"{_fmt(item.expected_workflows)} / {_fmt(item.found_workflows)}",
            f"{_fmt(item.expected_credentials)} / {_fmt(item.found_credentials)}",
            _node_types(item),
            item.extensions,
            item.entities,
            item.binary_data,
            item.credential_tests,
            f"{len(item.active_in_snapshot)}: {active}",
            _migrations(item.migrations_run),
            _changes(item.upgrade_changes),
            item.key_fingerprint,
            _fmt(item.boot_seconds),
            _fmt(item.test_seconds),
            _verdict(item),
        ]
        result = item.result
        if result == "PARTIAL":
            missing = sorted(item.required - item.passed)
            cells[-1] = f"PARTIAL (not run: {', '.join(missing)}): not verified"
        color = {"PASSED": "#070", "FAILED": "#c00"}.get(result, "#b60")
        # The verdict right after the snapshot's name: the first thing a reader looks for.
        verdict_style = f' style="color:{color};font-weight:bold"'
        ordered_cells = [cells[0], cells[-1], *cells[1:-1]]
        labelled = "".join(
            f'<td data-label="{html.escape(label)}"{verdict_style if index == 1 else ""}>'
            f"{html.escape(_fmt(cell))}</td>"
            for index, (label, cell) in enumerate(zip(ordered, ordered_cells, strict=True))
        )
        rows.append(f"<tr>{labelled}</tr>")
    return (
        '<h2>Snapshots verified</h2><table id="snapshot-summary" border="1" cellpadding="4" '
        f'style="border-collapse:collapse"><tr class="head">{head}</tr>{"".join(rows)}</table>'
    )
