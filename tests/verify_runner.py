"""Running the verify suite as an operator does, from this project's tests."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backup.abandoned import owner_record
from backup.keystore import KeyStore
from backup.manifest import MANIFEST_NAME, Manifest
from tests.cli_support import ROOT
from verify.result import SCHEMA_FILE

# The checks `pytest verify` runs per snapshot and target (verify/test_snapshot.py).
VERIFY_CHECKS = 12


@dataclass(frozen=True)
class VerifyRun:
    result: pytest.RunResult
    report: Path
    failures: dict[str, str]  # test name -> failure or error message, from the JUnit XML
    properties: dict[str, dict[str, str]]  # test name -> its JUnit properties

    def machine_result(self) -> dict[str, Any]:
        """The run's JSON result, checked against the schema it documents."""
        body: dict[str, Any] = json.loads(self.report.with_suffix(".json").read_text())
        jsonschema.validate(body, json.loads(SCHEMA_FILE.read_text()))
        assert self.report.with_suffix(".json").stat().st_mode & 0o077 == 0
        return body


def start_verify(
    command: list[str], cwd: Path, *, sigint_ignored: bool = False
) -> subprocess.Popen[bytes]:
    """``command`` started silently in its own session, as a scheduler starts a job, for tests
    that signal it (the session alone, or the whole group); ``sigint_ignored`` as a shell
    script's background job (`cmd &`) starts."""
    if sigint_ignored:
        command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    return subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def private_reports(folder: Path) -> tuple[str, ...]:
    """--html and --junitxml into ``folder`` (the JSON result goes beside them), for a run
    started by a test."""
    return ("--html", str(folder / "r.html"), "--junitxml", str(folder / "r.xml"))


def configure_only(command: list[str], cwd: Path) -> str:
    """``command`` (a verify run) with ``--collect-only``: it sets up, removes what killed
    runs left, and stops before any check; what it said on stderr."""
    done = subprocess.run(
        [*command, "--collect-only"], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    return done.stderr


def another_boots_record() -> str:
    """This run's owner record as made before the machine last started (or on another
    machine), with a start time no process has: judged, it would be taken for gone."""
    return json.dumps({**json.loads(owner_record()), "pid": 1, "started": -1, "boot": "another"})


def verify_command(snapshots: Path, key_store: Path, *extra: str) -> list[str]:
    """``pytest verify`` as a command line, for tests that start it themselves (to interrupt
    it, say)."""
    return [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "verify"),
        "--snapshots",
        str(snapshots),
        "--key-store",
        str(key_store),
        *extra,
    ]


def run_verify(
    pytester: pytest.Pytester, snapshots: Path | None, key_store: Path | None, *extra: str
) -> VerifyRun:
    """Run ``pytest verify`` as an operator does; read its default HTML and JUnit reports.
    Without ``snapshots`` or ``key_store``, ``extra`` says where they come from (--repo)."""
    folders = [("--snapshots", snapshots), ("--key-store", key_store)]
    given = [arg for option, path in folders if path is not None for arg in (option, str(path))]
    result = pytester.runpytest_subprocess(
        str(ROOT / "verify"), *given, "--durations=5", *extra, timeout=900
    )
    report_line = next(line for line in result.outlines if "Generated html report" in line)
    report = Path(report_line.split("file://", 1)[1].strip(" -"))
    failures: dict[str, str] = {}
    properties: dict[str, dict[str, str]] = {}
    for case in ET.parse(report.with_suffix(".xml")).iter("testcase"):
        for problem in [*case.iter("failure"), *case.iter("error")]:
            failures[case.attrib["name"]] = problem.attrib.get("message", "")
        properties[case.attrib["name"]] = {
            item.attrib["name"]: item.attrib["value"] for item in case.iter("property")
        }
    return VerifyRun(result, report, failures, properties)


_DATA_URI = re.compile(r"data:[a-z]+/[a-z+-]+;(?:charset=utf-8;)?base64,([A-Za-z0-9+/=]+)")


def metric_samples(path: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A metrics file as prometheus-client's own parser reads it: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(path.read_text(encoding="utf-8"))
        for sample in family.samples
    }


def report_with_attachments(report: Path) -> str:
    """The HTML report's text followed by every attachment it embeds (n8n logs are base64)."""
    text = report.read_text(encoding="utf-8")
    decoded = [
        base64.b64decode(blob).decode("utf-8", errors="replace") for blob in _DATA_URI.findall(text)
    ]
    return "\n".join([text, *decoded])


def wrong_key_store(folder: Path, snapshot: Path, wrong_key: str) -> Path:
    """A key store whose entry for ``snapshot``'s fingerprint holds ``wrong_key`` (0700/0600,
    as a real one), for the wrong-key cases."""
    fingerprint = Manifest.load(snapshot).key_fingerprint
    folder.mkdir(mode=0o700)
    entry = folder / f"{fingerprint}.key"
    entry.write_text(wrong_key + "\n")
    entry.chmod(0o600)
    return folder


def assert_wrong_key_caught_before_boot(run: VerifyRun, snapshot: Path, fingerprint: str) -> None:
    """A key store entry that is not the snapshot's key fails authentication, names the key,
    and nothing is checked or booted on an unauthenticated snapshot."""
    case = snapshot.name
    authentic = run.failures[f"test_manifest_authentic[{case}]"]
    assert f"does not hold encryption key {fingerprint}" in authentic, authentic
    files = run.failures[f"test_files[{case}]"]
    assert "not checked: the manifest is not authentic" in files, files
    assert fingerprint in files
    boot = run.failures[f"test_boot[{case}]"]
    assert "not run: files failed (see test_files)" in boot, boot  # the cause is said once
    run.result.assert_outcomes(failed=1, errors=VERIFY_CHECKS - 1)
    assert "n8n log" not in report_with_attachments(run.report), "something booted"


def resign_manifest(folder: Path, key_store: Path, **changes: object) -> None:
    """Rewrite a snapshot's manifest with ``changes``, signed with the right key (a writer's
    mistake rather than an attacker's edit: the checks after authentication must catch it)."""
    manifest = Manifest.load(folder)
    key = KeyStore(key_store).load(manifest.key_fingerprint)
    changed = replace(manifest, **changes)  # type: ignore[arg-type]
    (folder / MANIFEST_NAME).write_text(changed.to_json(key))
