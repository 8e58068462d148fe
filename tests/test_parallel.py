"""Parallel verification with pytest-xdist: each snapshot-and-target group on one worker with
its own n8n, one merged report, the same verdicts, causes and records as a serial run, nothing
left running; -n auto bounded by memory as well as cores."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from docker.client import DockerClient

from backup.n8n.instances.docker_sessions import SESSION_LABEL
from backup.verification_record import read_record
from tests.cli_support import ROOT
from tests.docker_support import DOCKER_ARGS, EngineOverTcp, engine_objects, left_behind
from tests.n8n_support import (
    TakenSnapshot,
    copy_variant,
    flip_middle_byte,
    restored_folders,
    wait_for_restored_instances,
    wait_until_restored_instances_stop,
)
from tests.tls_certificates import Authority
from tests.verify_runner import (
    VERIFY_CHECKS,
    resign_manifest,
    run_verify,
    start_verify,
    verify_command,
)
from verify.merge import main as verify_merge
from verify.parallel import (
    N8N_WORKER_BYTES,
    available_memory,
    parallel_workers,
    parse_shard,
    shard_groups,
    snapshot_group,
)

PROCESS = ("--runtime", "process", "--quiet-seconds", "1")
GIB = 1024**3


def test_auto_workers_are_bounded_by_memory_and_cores(tmp_path: Path) -> None:
    assert parallel_workers(2, 24 * GIB) == 2
    assert parallel_workers(16, 4 * GIB) == 4 * GIB // N8N_WORKER_BYTES
    assert parallel_workers(4, 100 * 1024 * 1024) == 1  # never none
    assert parallel_workers(3, None) == 3  # memory unknown: cores decide
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683520 kB\nMemAvailable:    2097152 kB\n")
    assert available_memory(meminfo) == 2 * GIB
    assert available_memory(tmp_path / "missing") is None
    assert available_memory() is not None  # this machine's


def test_a_group_is_a_snapshot_and_target() -> None:
    assert snapshot_group("verify/test_snapshot.py::test_files[2026-a@2.40.7]") == "2026-a@2.40.7"
    assert snapshot_group("verify/test_snapshot.py::test_boot[b]") == "b"
    assert snapshot_group("tests/test_x.py::test_plain") == "tests/test_x.py::test_plain"


def test_shards_cover_every_group_exactly_once() -> None:
    groups = [f"2026112{day}T000000Z-{day:06x}@2.40.7" for day in range(7)] + ["a", "b"]
    for shards in (1, 2, 3, 4, 9):
        covered = [shard_groups(groups, k, shards) for k in range(1, shards + 1)]
        assert sorted(g for part in covered for g in part) == sorted(groups)
        assert max(map(len, covered)) - min(map(len, covered)) <= 1, "unbalanced"
    assert parse_shard("2/3") == (2, 3)
    for wrong in ("0/2", "3/2", "x/2", "2"):
        with pytest.raises(ValueError):
            parse_shard(wrong)


def _outcomes(run_dir: Path, report: Path) -> dict[str, tuple[str, list[str]]]:
    result = json.loads(report.with_suffix(".json").read_text())
    return {
        Path(entry["snapshot_folder"]).name: (entry["result"], entry["causes"])
        for entry in result["entries"]
    }


def test_two_workers_give_the_serial_verdicts_causes_and_records(
    pytester: pytest.Pytester, taken: TakenSnapshot, tmp_path: Path
) -> None:
    root = tmp_path / "four"
    root.mkdir()
    copy_variant(taken, root, "good-a")
    copy_variant(taken, root, "good-b")
    flip_middle_byte(copy_variant(taken, root, "flipped-byte") / "database.sqlite")
    wrong = copy_variant(taken, root, "wrong-key")
    # Every copy has the same key: this one names a key the store does not have.
    resign_manifest(wrong, taken.key_store, key_fingerprint="0" * 32)
    before = restored_folders()

    serial = run_verify(pytester, root, taken.key_store, *PROCESS)
    serial_outcomes = _outcomes(root, serial.report)
    serial_records = {p.name: read_record(p) for p in root.iterdir() if p.is_dir()}
    for record in serial_records.values():
        assert record is not None

    parallel = run_verify(pytester, root, taken.key_store, *PROCESS, "-n", "2")
    assert any("2 workers" in line for line in parallel.result.outlines), parallel.result.outlines[
        :5
    ]
    parallel_outcomes = _outcomes(root, parallel.report)
    assert parallel_outcomes == serial_outcomes
    assert {name: result for name, (result, _) in parallel_outcomes.items()} == {
        "good-a": "PASSED",
        "good-b": "PASSED",
        "flipped-byte": "FAILED",
        "wrong-key": "FAILED",
    }
    assert parallel.failures == serial.failures
    for name, record in serial_records.items():
        again = read_record(root / name)
        assert again is not None and record is not None
        assert [(t.target_version, t.result, t.causes) for t in again.targets] == [
            (t.target_version, t.result, t.causes) for t in record.targets
        ]
        assert again.verified_at >= record.verified_at
    # One report with every test, as in the serial run; the summary has every snapshot.
    cases = list(ET.parse(parallel.report.with_suffix(".xml")).iter("testcase"))
    assert len(cases) == 4 * VERIFY_CHECKS
    html = parallel.report.read_text(encoding="utf-8")
    for name in ("good-a", "good-b", "flipped-byte", "wrong-key"):
        assert f'<td data-label="snapshot">{name}</td>' in html
    new = restored_folders() - before
    assert not new, f"restore folders left behind: {new}"

    # A CI matrix of two machines: each verifies its shard; the merge equals the serial run.
    # Each shard's reports reach the merge as a CI job's artifacts do: in a folder of their
    # own, away from where the shard wrote them (and the path its result records).
    shard_results = []
    for number, shard in enumerate(("1/2", "2/2"), start=1):
        run = run_verify(pytester, root, taken.key_store, *PROCESS, "--shard", shard)
        assert len(_outcomes(root, run.report)) == 2
        artifacts = tmp_path / "shards" / f"shard-{number}"
        artifacts.mkdir(parents=True)
        for suffix in (".json", ".xml", ".html"):
            shutil.move(run.report.with_suffix(suffix), artifacts)
        shard_results.append(artifacts / run.report.with_suffix(".json").name)
    merged_dir = tmp_path / "merged"
    assert verify_merge(["--out", str(merged_dir), *map(str, shard_results)]) == 1  # FAILED
    (merged,) = merged_dir.glob("verify-merged-*.json")
    body = json.loads(merged.read_text())
    assert {
        Path(entry["snapshot_folder"]).name: (entry["result"], entry["causes"])
        for entry in body["entries"]
    } == serial_outcomes
    assert len(list(ET.parse(merged.with_suffix(".xml")).iter("testcase"))) == 4 * VERIFY_CHECKS
    page = merged.with_suffix(".html").read_text()
    assert "n8n restore verification: FAILED" in page and page.count("shard report") == 4
    overlap = verify_merge(["--out", str(merged_dir), str(shard_results[0]), str(shard_results[0])])
    assert overlap == 2, "the same shard twice is an overlap"


@pytest.mark.parametrize(
    ("stop", "whole_group", "in_background"),
    [
        (signal.SIGINT, True, False),
        (signal.SIGTERM, False, False),
        (signal.SIGTERM, True, False),
        (signal.SIGTERM, False, True),
    ],
    ids=["ctrl-c", "sigterm-to-pytest", "sigterm-to-all", "sigterm-to-a-background-job"],
)
def test_ctrl_c_under_xdist_leaves_nothing_running(
    taken: TakenSnapshot,
    tmp_path: Path,
    stop: signal.Signals,
    whole_group: bool,
    in_background: bool,
) -> None:
    """Ctrl-C reaches the whole foreground group; a CI job's timeout, docker stop or kill
    sends SIGTERM to pytest alone, which then stops its workers as after Ctrl-C; systemd and
    `timeout` send it to all, and each worker then takes one interrupt, not two. A script's
    background job (`cmd &`) runs with SIGINT ignored, its workers too: they still stop."""
    root = tmp_path / "two"
    root.mkdir()
    copy_variant(taken, root, "one")
    copy_variant(taken, root, "two")
    before = restored_folders()
    verify = start_verify(
        verify_command(
            root,
            taken.key_store,
            *PROCESS,
            "--quiet-seconds",
            "60",
            "-n",
            "2",
            "-p",
            "no:cacheprovider",
        ),
        tmp_path,
        sigint_ignored=in_background,
    )
    try:
        booted = wait_for_restored_instances(before, 2, runner=verify)
        assert booted, "no n8n booted under xdist"
        if whole_group:
            os.killpg(verify.pid, stop)
        else:
            verify.send_signal(stop)
        assert verify.wait(timeout=120) == pytest.ExitCode.INTERRUPTED
    finally:
        if verify.poll() is None:
            os.killpg(verify.pid, signal.SIGKILL)
    assert wait_until_restored_instances_stop(before) == [], f"an n8n outlived {stop.name}"
    left = restored_folders() - before
    assert not left, f"restore folders left behind: {left}"


def test_docker_runtime_under_xdist_cleans_up_on_every_worker(
    pytester: pytest.Pytester,
    taken: TakenSnapshot,
    tmp_path: Path,
    docker_client: DockerClient,
    n8n_image: str,
) -> None:
    root = tmp_path / "docker-two"
    root.mkdir()
    copy_variant(taken, root, "one")
    flip_middle_byte(copy_variant(taken, root, "flipped-byte") / "database.sqlite")
    copy_variant(taken, root, "two")
    ours = {"label": SESSION_LABEL}
    before = engine_objects(docker_client, ours)
    run = run_verify(pytester, root, taken.key_store, *DOCKER_ARGS, "-n", "2")
    assert {name: result for name, (result, _) in _outcomes(root, run.report).items()} == {
        "one": "PASSED",
        "two": "PASSED",
        "flipped-byte": "FAILED",
    }
    text = run.report.read_text(encoding="utf-8")
    assert text.count("docker (n8n-restore-verify/n8n:2.40.7, internal network)") >= 2
    left = left_behind(docker_client, ours, before)
    assert left == [], f"a worker left these behind: {left}"


def test_two_workers_on_a_remote_engine_reached_with_tls(
    pytester: pytest.Pytester,
    taken: TakenSnapshot,
    tmp_path: Path,
    docker_client: DockerClient,
    n8n_image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DOCKER_HOST=tcp://... with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH (an engine started
    with --tlsverify), two workers: each snapshot verified on the engine with the data shipped
    in, nothing left on it; a client certificate the engine's authority did not sign is one
    line naming DOCKER_HOST and the TLS refusal, and nothing is created."""
    authority = Authority("engine-ca")
    engine = EngineOverTcp(tls=authority.server_context(tmp_path / "engine-tls"))
    authority.issue(tmp_path / "client-tls", "verify", server=False)
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path / "client-tls"))
    # As on many company machines: requests' own authorities, which would win over the engine's.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)
    root = tmp_path / "tls-two"
    root.mkdir()
    copy_variant(taken, root, "one")
    copy_variant(taken, root, "two")
    ours = {"label": SESSION_LABEL}
    before = engine_objects(docker_client, ours)
    try:
        run = run_verify(
            pytester, root, taken.key_store, *DOCKER_ARGS, "--quiet-seconds", "2", "-n", "2"
        )
        assert run.failures == {}
        outcomes = _outcomes(root, run.report)
        assert {name: result for name, (result, _) in outcomes.items()} == {
            "one": "PASSED",
            "two": "PASSED",
        }
        text = run.report.read_text(encoding="utf-8")
        assert text.count("remote engine 127.0.0.1: data shipped into a volume") >= 2
        assert engine.refused_handshakes == 0
        assert sum("/containers/create" in request for request in engine.requests) >= 4
        assert [bind for bind in engine.binds if bind.startswith("/")] == []
        assert left_behind(docker_client, ours, before) == []

        # A client certificate of another authority, the engine's authority trusted.
        Authority("someone-else").issue(tmp_path / "stranger-tls", "verify", server=False)
        shutil.copy(tmp_path / "client-tls" / "ca.pem", tmp_path / "stranger-tls" / "ca.pem")
        monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path / "stranger-tls"))
        created = len(engine.requests)
        result = pytester.runpytest_subprocess(
            str(ROOT / "verify"), "--snapshots", str(root), "--key-store", str(taken.key_store),
            *DOCKER_ARGS, timeout=300,
        )  # fmt: skip
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        errors = [line for line in result.errlines if line.startswith("ERROR:")]
        assert len(errors) == 1, result.errlines
        assert f"DOCKER_HOST={engine.url} does not answer (" in errors[0]
        assert "alert unknown ca" in errors[0].lower(), errors[0]  # the engine's refusal
        assert engine.refused_handshakes > 0
        assert len(engine.requests) == created
    finally:
        engine.close()
