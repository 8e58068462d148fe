"""``n8n-verify-merge``: one result from the shards of a CI matrix (``pytest verify --shard K/N``
on each machine): the JSON results joined (each snapshot-and-target once), the JUnit files
joined, and an HTML page with every snapshot's verdict and first cause, linking each shard's
own full report.

    n8n-verify-merge --out merged/ shard-1/reports/verify-*.json shard-2/reports/verify-*.json
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backup.atomic import make_private_dir, reserve_new_file, write_text_atomic
from backup.errors import InputError
from verify.result import SCHEMA, SCHEMA_VERSION, verdict_of

PROG = "n8n-verify-merge"


def read_shard(path: Path) -> dict[str, Any]:
    """One shard's JSON result, checked to be one."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a readable verify result: {exc}") from None
    if not isinstance(body, dict) or body.get("schema") != SCHEMA:
        raise InputError(f"{path} is not a verify result ({SCHEMA})")
    if body.get("schema_version") != SCHEMA_VERSION or not isinstance(body.get("entries"), list):
        raise InputError(
            f"{path} has schema version {body.get('schema_version')!r}, not {SCHEMA_VERSION}"
        )
    if not all(isinstance(entry, dict) for entry in body["entries"]) or not isinstance(
        body.get("junit", ""), str | None
    ):
        raise InputError(f"{path} is not a verify result: its entries or JUnit file are garbled")
    return body


def merge_results(shards: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """The shards' entries as one result; a snapshot-and-target verified by two shards is an
    error (the shards overlapped)."""
    entries: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, str], Path] = {}
    for path, body in shards:
        for entry in body["entries"]:
            # A group: the snapshot folder's name (its path differs per machine) and the target.
            folder = Path(str(entry.get("snapshot_folder"))).name
            key = (folder, str(entry.get("snapshot_id")), str(entry.get("target_version")))
            if key in seen:
                raise InputError(
                    f"{folder} ({key[1]}) on n8n {key[2]} is in {seen[key]} and in {path}: the "
                    "shards overlap"
                )
            seen[key] = path
            entries.append({**entry, "shard_result": str(path)})
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "tool_version": shards[0][1].get("tool_version"),
        "verified_at": max(str(body.get("verified_at")) for _, body in shards),
        "shards": [str(path) for path, _ in shards],
        "verdict": verdict_of([entry.get("result") for entry in entries]),
        "entries": entries,
    }


def _junit_of(result: Path, body: dict[str, Any]) -> Path:
    """A shard's JUnit file: beside its JSON result under the name the result gives (where a
    CI job's artifacts put it: the path recorded is the shard machine's), else at that path."""
    recorded = Path(str(body["junit"]))
    beside = result.parent / recorded.name
    if beside.is_file():
        return beside
    if recorded.is_file():
        return recorded
    raise InputError(
        f"{result} names the JUnit file {recorded.name}, which is not beside it: copy each "
        "shard's whole reports folder"
    )


def merge_junit(files: list[Path]) -> str:
    """The shards' JUnit files as one ``<testsuites>`` document."""
    merged = ET.Element("testsuites")
    for file in files:
        try:
            root = ET.parse(file).getroot()
        except (OSError, ET.ParseError) as exc:
            raise InputError(f"{file} is not a readable JUnit file: {exc}") from None
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        merged.extend(suites)
    return ET.tostring(merged, encoding="unicode")


def summary_page(result: dict[str, Any]) -> str:
    """An HTML page: the merged verdict, then one row per snapshot and target."""
    rows = []
    for entry in result["entries"]:
        cells = (
            entry.get("snapshot_id"),
            entry.get("target_version"),
            entry.get("result"),
            (entry.get("causes") or ["-"])[0],
        )
        shard_report = Path(str(entry.get("shard_result"))).with_suffix(".html").as_uri()
        rows.append(
            "<tr>"
            + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells)
            + f'<td><a href="{html.escape(shard_report)}">shard report</a></td></tr>'
        )
    merged_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    title = f"n8n restore verification: {html.escape(result['verdict'])}"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{title} (merged)</title></head><body><h1>{title}</h1>"
        f"<p>{len(result['shards'])} shards, {len(result['entries'])} snapshot/target pairs, "
        f"merged {merged_at}</p>"
        '<table id="snapshot-summary" border="1" cellpadding="4"><tr><th>snapshot</th>'
        "<th>target n8n</th><th>result</th><th>first cause</th><th>details</th></tr>"
        f"{''.join(rows)}</table></body></html>"
    )


def merge(out: Path, results: list[Path]) -> tuple[Path, str]:
    """Write the merged JSON, JUnit and HTML under ``out`` (0700, files 0600); the JSON's path
    and the merged verdict."""
    if not results:
        raise InputError("give the shards' JSON results (reports/verify-*.json of each)")
    shards = [(path.resolve(), read_shard(path)) for path in results]
    merged = merge_results(shards)
    junit_files = [_junit_of(path, body) for path, body in shards if body.get("junit")]
    junit_text = merge_junit(junit_files) if junit_files else None
    make_private_dir(out)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = reserve_new_file(out, f"verify-merged-{stamp}", ".json")
    if junit_text is not None:
        junit = target.with_suffix(".xml")
        write_text_atomic(junit, junit_text)
        merged["junit"] = str(junit)
    merged["report"] = str(target.with_suffix(".html"))
    write_text_atomic(target.with_suffix(".html"), summary_page(merged))
    write_text_atomic(target, json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
    return target, str(merged["verdict"])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when every merged pair passed, 1 when one did not, 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Join the results of pytest verify --shard K/N runs into one."
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the merged files")
    parser.add_argument("results", type=Path, nargs="+", help="each shard's verify-*.json")
    args = parser.parse_args(argv)
    try:
        path, verdict = merge(args.out, args.results)
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"{verdict}: {path}")
    return 0 if verdict == "PASSED" else 1


if __name__ == "__main__":
    sys.exit(main())
