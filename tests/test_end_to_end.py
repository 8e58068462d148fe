"""The whole loop on real n8n 2.x: seed, snapshot under write load, verify, and break it.

The verify suite runs through pytester in a subprocess, exactly as an operator runs it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest

from backup.digests import sha256_file
from backup.manifest import MANIFEST_NAME, Counts, Manifest, find_snapshots
from backup.n8n.api import transfer_headers
from backup.n8n.extensions import ARCHIVE_NAME as CUSTOM_NODES_ARCHIVE
from backup.n8n.node_types import TYPES_PATH
from backup.n8n.session import EditorSession, instance_jwt_secret
from backup.n8n.sqlite import N8nDatabase
from backup.secret import Secret
from tests.browser import environment_table, printed_pages, rendered_dom, summary_results
from tests.cli_support import ROOT, backup_command, run_backup_cli, run_snapshot_cli, snapshot_args
from tests.docker_support import DOCKER_ARGS, PROCESS_ARGS
from tests.n8n_support import (
    HOSTILE_NAMES,
    Canary,
    SourceInstance,
    TakenSnapshot,
    copy_variant,
    flip_middle_byte,
    process_source_args,
    start_source,
)
from tests.receiver import Receiver
from tests.verify_runner import (
    VERIFY_CHECKS,
    assert_wrong_key_caught_before_boot,
    metric_samples,
    report_with_attachments,
    resign_manifest,
    run_verify,
    wrong_key_store,
)
from verify.bootstrap import sample_workflow


def test_snapshot_holds_everything_and_no_key(taken: TakenSnapshot, source: SourceInstance) -> None:
    manifest = Manifest.load(taken.path)
    assert taken.writes_during_snapshot > 0, "the writer did not overlap the snapshot"
    assert manifest.counts.workflows == len(manifest.workflows) > 250
    assert manifest.source_n8n_version == "2.40.7"
    names = {w.name for w in manifest.workflows}
    assert {name.strip() for name in HOSTILE_NAMES} <= {name.strip() for name in names}
    assert len({c.type for c in manifest.credentials}) >= 3
    assert [w.name for w in manifest.workflows if w.active] == ["Canary every 5 s"]
    exports = sorted(
        p.relative_to(taken.path).as_posix() for p in (taken.path / "workflows").iterdir()
    )
    assert exports == sorted(w.export_file for w in manifest.workflows if w.export_file)
    assert all(w.export_file for w in manifest.workflows)
    listed = {f.path for f in manifest.files}
    assert {"database.sqlite", CUSTOM_NODES_ARCHIVE} <= listed
    assert stat.S_IMODE(taken.path.stat().st_mode) == 0o700
    for path in taken.path.rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
        if path.is_dir():
            continue
        content = path.read_bytes()
        assert source.encryption_key.encode() not in content, f"the encryption key is in {path}"
        if path.name != "database.sqlite":
            assert source.api_key.encode() not in content, f"the API key is in {path}"
    assert stat.S_IMODE(taken.key_store.stat().st_mode) == 0o700
    assert [p.name for p in taken.key_store.iterdir()] == [f"{manifest.key_fingerprint}.key"]


def test_n8n_answers_loopback_clients_uncompressed(source: SourceInstance) -> None:
    """What verify and snapshot read from an n8n on loopback (workflow pages of megabytes, a
    node type list of 17 MB) is not compressed, where compressing costs CPU on both sides and
    saves nothing: the editor session's answers and the API's (with the API client's headers);
    asked as before, n8n compresses."""
    base = source.process.base_url
    database = N8nDatabase(source.n8n_folder / "database.sqlite")
    owner = database.owner()
    assert owner is not None
    secret = instance_jwt_secret(database, Secret(source.encryption_key))
    with EditorSession(base, owner, secret) as editor:
        types = editor.answer("GET", TYPES_PATH)
    key = {"X-N8N-API-KEY": source.api_key}
    plain = httpx.get(f"{base}/api/v1/workflows", headers={**key, **transfer_headers(base)})
    compressed = httpx.get(f"{base}/api/v1/workflows", headers=key)  # httpx's Accept-Encoding
    assert types.status_code == plain.status_code == compressed.status_code == 200
    assert len(types.content) > 1_000_000 and "content-encoding" not in types.headers
    assert "content-encoding" not in plain.headers
    assert "content-encoding" in compressed.headers
    assert plain.json() == compressed.json()


def test_verify_passes_nothing_fires_and_report_keeps_secrets(
    pytester: pytest.Pytester, taken: TakenSnapshot, source: SourceInstance, canary: Canary
) -> None:
    hits_before = canary.hits
    metrics = pytester.path / "n8n_backup.prom"
    receiver = Receiver()
    try:
        run = run_verify(
            pytester,
            taken.path.parent,
            taken.key_store,
            *PROCESS_ARGS,
            "--metrics-file",
            str(metrics),
            "--notify",
            receiver.url("/hook"),
            "--notify",
            "ping+" + receiver.url("/ping/nightly"),
        )
    finally:
        receiver.close()
    # A pass: the ping check hears start and success, the webhook nothing (failures only).
    assert receiver.paths() == ["/ping/nightly/start", "/ping/nightly"]
    assert b"PASSED" in receiver.at("/ping/nightly")[0].body
    assert run.failures == {}
    run.result.assert_outcomes(passed=VERIFY_CHECKS)
    assert canary.hits == hits_before, "a restored workflow reached the canary"
    (entry,) = run.machine_result()["entries"]
    assert run.machine_result()["verdict"] == "PASSED" and entry["causes"] == []
    assert entry["durations"]["boot"] > 0 and entry["counts"]["credentials_found"] == 6
    samples = metric_samples(metrics)
    instance = frozenset(
        {"instance": urllib.parse.urlsplit(source.process.base_url).netloc}.items()
    )
    target = instance | {("target_version", "2.40.7")}
    assert samples[("n8n_backup_last_verification_success", target)] == 1
    assert samples[("n8n_backup_snapshots", instance)] == 1
    workflows = samples[("n8n_backup_last_snapshot_workflows", instance)]
    assert workflows == Manifest.load(taken.path).counts.workflows
    report = run.report
    assert report.parent == ROOT / "reports"
    text = report_with_attachments(report)
    manifest = Manifest.load(taken.path)
    assert summary_results(rendered_dom(report)) == ["PASSED"]  # as a browser shows it
    assert manifest.snapshot_id in text and "snapshot-summary" in text
    assert "Canary every 5 s" in text  # listed as active in the snapshot, not activated
    for secret in [*source.seeded_secrets, source.encryption_key, source.api_key]:
        assert secret not in text, "a secret reached the HTML report"
        assert secret not in report.with_suffix(".xml").read_text(encoding="utf-8")
    # The result is recorded beside the snapshot, and `list` shows it.
    listed = run_backup_cli("list", str(taken.path.parent), "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["snapshot_id"] == manifest.snapshot_id
    assert entry["last_verification"] == "PASSED" and entry["workflows"] > 250
    table = run_backup_cli("list", str(taken.path.parent)).stdout.splitlines()
    assert table[0].startswith("SNAPSHOT") and manifest.snapshot_id in table[1]


@pytest.mark.parametrize("runtime_args", [PROCESS_ARGS, DOCKER_ARGS], ids=["process", "docker"])
def test_verify_names_each_kind_of_damage(
    pytester: pytest.Pytester,
    taken: TakenSnapshot,
    tmp_path: Path,
    runtime_args: tuple[str, ...],
    request: pytest.FixtureRequest,
) -> None:
    if "docker" in runtime_args:
        request.getfixturevalue("n8n_image")
    root = tmp_path / "damaged"
    root.mkdir()
    flipped = copy_variant(taken, root, "flipped-byte") / "database.sqlite"
    flip_middle_byte(flipped)
    truncated = copy_variant(taken, root, "truncated-db") / "database.sqlite"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    deleted = copy_variant(taken, root, "deleted-workflow-file")
    victim = sorted((deleted / "workflows").iterdir())[0]
    victim.unlink()
    lying = copy_variant(taken, root, "lying-count")
    real = Manifest.load(lying).counts
    resign_manifest(
        lying, taken.key_store, counts=Counts(real.workflows + 5, real.credentials, real.executions)
    )
    missing_key = copy_variant(taken, root, "missing-key")
    resign_manifest(missing_key, taken.key_store, key_fingerprint="0" * 32)

    metrics = tmp_path / "n8n_backup.prom"
    run = run_verify(
        pytester,
        root,
        taken.key_store,
        "--quiet-seconds",
        "2",
        *runtime_args,
        "--metrics-file",
        str(metrics),
    )
    failures = run.failures
    success = [
        value
        for (name, _), value in metric_samples(metrics).items()
        if name == "n8n_backup_last_verification_success"
    ]
    assert success == [0], "a failed verification must show as 0"
    assert run.result.ret == 1
    relative_victim = victim.relative_to(deleted).as_posix()
    expected = {
        "test_files[flipped-byte]": "database.sqlite does not match its sha256",
        "test_boot[flipped-byte]": "not booted, the database copy is damaged",
        "test_counts[flipped-byte]": "not read, the database copy is damaged",
        "test_key[flipped-byte]": "not run: counts failed (see test_counts)",
        "test_files[truncated-db]": "database.sqlite has",
        "test_boot[truncated-db]": "not booted, the database copy is damaged",
        "test_files[deleted-workflow-file]": f"{relative_victim} is missing",
        "test_counts[lying-count]": "the manifest counts",
        "test_workflows_load[lying-count]": "n8n serves",
        "test_manifest_authentic[missing-key]": f"encryption key {'0' * 32} is not in the key",
        "test_files[missing-key]": f"encryption key {'0' * 32} is not in the key store",
        "test_boot[missing-key]": "not run: files failed (see test_files)",
    }
    for test, message in expected.items():
        assert message in failures.get(test, ""), f"{test}: {failures.get(test)!r}"
    assert "truncated" in failures["test_files[truncated-db]"]
    # The same verdicts and first causes, machine-readable; JUnit says what each test checked.
    result = run.machine_result()
    assert result["verdict"] == "FAILED" and len(result["entries"]) == 5
    by_case = {Path(entry["snapshot_folder"]).name: entry for entry in result["entries"]}
    (cause,) = by_case["deleted-workflow-file"]["causes"]
    assert cause.startswith("test_files: snapshot files: ") and relative_victim in cause
    assert by_case["flipped-byte"]["result"] == "FAILED"
    assert by_case["flipped-byte"]["counts"]["workflows_expected"] > 250
    props = run.properties["test_boot[deleted-workflow-file]"]
    assert props["target_n8n_version"] == props["source_n8n_version"] == "2.40.7"
    assert props["snapshot_id"] == Manifest.load(deleted).snapshot_id
    assert props["instance"] == Manifest.load(deleted).instance
    # What matters for a restore, in the Environment table; the summary prints on one page.
    dom = rendered_dom(run.report)
    environment = environment_table(dom)
    assert environment["n8n (restore target)"] == "2.40.7"
    assert "Python" in environment and environment["Times"] == "UTC"
    assert not {"Plugins", "Packages"} & environment.keys()
    runtime_fact = "Docker engine" if "docker" in runtime_args else "Node.js (process runtime)"
    assert re.match(r"v?\d+\.\d+\.\d+", environment[runtime_fact]), environment
    pages = printed_pages(run.report, tmp_path / "report.pdf")
    first_page = " ".join(pages[0].split())
    for case in ("flipped-byte", "truncated-db", "deleted-workflow-file", "lying-count"):
        assert case in first_page, f"{case} is not on the printed summary's first page"
    assert first_page.count("FAILED") >= 5 and "Snapshots verified" in first_page
    passed_elsewhere = {
        "test_boot[deleted-workflow-file]",
        "test_workflows_load[deleted-workflow-file]",
        "test_credentials_decrypt_in_n8n[lying-count]",
    }
    assert not passed_elsewhere & failures.keys(), (
        "a check failed that has nothing to do with the damage"
    )


def test_verify_wrong_key_on_2x_names_the_key(
    pytester: pytest.Pytester, taken: TakenSnapshot, source: SourceInstance, tmp_path: Path
) -> None:
    manifest = Manifest.load(taken.path)
    wrong_store = wrong_key_store(
        tmp_path / "wrong-keys", taken.path, "this-is-not-the-right-key-0123456789"
    )
    run = run_verify(pytester, taken.path, wrong_store, "--quiet-seconds", "2", *PROCESS_ARGS)
    assert_wrong_key_caught_before_boot(run, taken.path, manifest.key_fingerprint)
    text = report_with_attachments(run.report)
    assert "this-is-not-the-right-key" not in text and source.encryption_key not in text


def test_interrupted_snapshot_leaves_no_snapshot(source: SourceInstance, tmp_path: Path) -> None:
    out = tmp_path / "out"
    source_args = ["--n8n-folder", str(source.n8n_folder), "--api-url", source.process.base_url]
    command = backup_command(*snapshot_args(source.api_key, out, tmp_path / "keys", *source_args))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(out.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert [p.name.startswith(".incomplete-") for p in out.iterdir()] == [True]
    assert find_snapshots(out) == []
    assert list((tmp_path / "keys").glob("*.key")) == [], "a key was stored for no snapshot"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_snapshot_stopped_by_a_signal_removes_its_staging(
    source: SourceInstance, tmp_path: Path, stop: signal.Signals
) -> None:
    """A CI job's timeout, docker stop or a closed SSH session stops a snapshot as Ctrl-C
    does: nothing half-written stays, and no key is stored for no snapshot."""
    out = tmp_path / "out"
    command = backup_command(
        *snapshot_args(source.api_key, out, tmp_path / "keys", *process_source_args(source))
    )
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(out.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.is_dir() and any(out.iterdir()), "the snapshot never started staging"
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.strip().splitlines() == [
        "n8n-backup: interrupted"
    ], stderr
    assert list(out.iterdir()) == []
    assert list((tmp_path / "keys").glob("*.key")) == [], "a key was stored for no snapshot"


def test_snapshot_with_a_refused_api_key_is_one_line(
    source: SourceInstance, tmp_path: Path
) -> None:
    args = snapshot_args(
        "not-an-api-key", tmp_path / "out", tmp_path / "keys", *process_source_args(source)
    )
    result = run_backup_cli(*args, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"n8n-backup: error: n8n at {source.process.base_url} refused the API key (401): give a "
        "valid key with --api-key-file or N8N_API_KEY"
    ]
    assert not (tmp_path / "keys").exists()


def test_older_target_is_refused_before_anything_boots(
    pytester: pytest.Pytester, taken: TakenSnapshot
) -> None:
    run = run_verify(
        pytester, taken.path, taken.key_store, "--n8n-version", "1.123.81", *PROCESS_ARGS
    )
    case = f"{taken.path.name}@1.123.81"
    message = run.failures[f"test_manifest_authentic[{case}]"]  # the first check, and only it
    assert "comes from n8n 2.40.7; n8n 1.123.81 is older" in message
    assert "cannot downgrade a database" in message
    assert (
        "not run: manifest authentic failed (see test_manifest_authentic)"
        in run.failures[f"test_boot[{case}]"]
    )
    run.result.assert_outcomes(errors=VERIFY_CHECKS)
    assert "not booted" in run.report.read_text(encoding="utf-8")


def api_restore_args(
    snapshot: Path, target: SourceInstance, key_folder: Path, key_store: Path
) -> list[str]:
    """``restore`` arguments for a workflows-only restore into ``target``."""
    key_file = key_folder / "target-api-key"
    key_file.write_text(target.api_key)
    key_file.chmod(0o600)
    return [
        "restore",
        str(snapshot),
        "--api-url",
        target.process.base_url,
        "--api-key-file",
        str(key_file),
        "--key-store",
        str(key_store),
    ]


def test_workflows_only_restore_into_another_instance(
    launcher: Path, taken: TakenSnapshot, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Through the public API: every exported workflow created once, nothing overwritten on a
    second run, and the credentials they reference listed for re-creation by hand."""
    manifest = Manifest.load(taken.path)
    target = start_source(launcher, tmp_path_factory.mktemp("workflows-target"))
    try:
        # An export that was edited (and relisted with its new sha256) in a manifest nobody
        # could sign: refused before anything reaches the target.
        edited = copy_variant(taken, tmp_path_factory.mktemp("edited"), "edited")
        export = next((edited / "workflows").iterdir())
        export.write_text(export.read_text(encoding="utf-8").replace('"nodes"', '"nodes" ', 1))
        raw = json.loads((edited / MANIFEST_NAME).read_text(encoding="utf-8"))
        for entry in raw["files"]:
            if entry["path"] == export.relative_to(edited).as_posix():
                entry["sha256"], entry["size"] = sha256_file(export), export.stat().st_size
        (edited / MANIFEST_NAME).write_text(json.dumps(raw))
        key_folder = tmp_path_factory.mktemp("target-key")
        refused = run_backup_cli(*api_restore_args(edited, target, key_folder, taken.key_store))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "is not restored: manifest.json does not match its MAC" in refused.stderr
        assert list(target.api.iter_workflows()) == [], "something was pushed"
        args = api_restore_args(taken.path, target, key_folder, taken.key_store)
        first = run_backup_cli(*args)
        assert first.returncode == 0, first.stdout + first.stderr
        exported = [w for w in manifest.workflows if w.export_file]
        assert f"workflows: {len(exported)} created, 0 overwritten, 0 kept" in first.stdout
        assert "credentials to re-create by hand" in first.stdout
        names = sorted(w["name"] for w in target.api.iter_workflows())
        assert len(names) == len(exported)
        second = run_backup_cli(*args)
        assert second.returncode == 0
        assert f"workflows: 0 created, 0 overwritten, {len(exported)} kept" in second.stdout
    finally:
        target.api.close()
        target.process.close()


def test_nightly_example_is_silent_on_success_and_loud_on_failure(
    source: SourceInstance, taken: TakenSnapshot, tmp_path: Path
) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(source.api_key)
    receiver = Receiver()
    metrics = tmp_path / "n8n_backup.prom"
    env = {
        # Alerts and metrics for every step, from the environment as the systemd unit sets them.
        "N8N_BACKUP_NOTIFY": f"{receiver.url('/hook')} ping+{receiver.url('/ping/night')}",
        "N8N_BACKUP_METRICS_FILE": str(metrics),
        **os.environ,
        "N8N_FOLDER": str(source.n8n_folder),
        "N8N_API_URL": source.process.base_url,
        "N8N_API_KEY_FILE": str(key_file),
        "BACKUP_ROOT": str(tmp_path / "snapshots"),
        "KEY_STORE": str(tmp_path / "keys"),
        "VERIFY_ARGS": "--runtime process --quiet-seconds 2",
    }
    # A folder an operator made by hand, sorting after every snapshot id, that would fail
    # verification: the night must verify the snapshot it takes, not this one.
    decoy = tmp_path / "snapshots" / "manual-copy-before-upgrade"
    decoy.parent.mkdir()
    shutil.copytree(taken.path, decoy)
    (decoy / "database.sqlite").write_bytes(b"not a database")
    nightly = [str(ROOT / "examples" / "nightly.sh")]
    try:
        ok = subprocess.run(
            nightly, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout == "" and ok.stderr == "", "cron would mail a successful night"
        # snapshot, verify and prune each pinged start and success; the webhook heard nothing.
        assert receiver.paths() == ["/ping/night/start", "/ping/night"] * 3
        samples = metric_samples(metrics)
        # The night's snapshot, and the decoy unless prune let it go.
        assert [v for (n, _), v in samples.items() if n == "n8n_backup_snapshots"] in ([1], [2])
        assert [v for (n, _), v in samples.items() if "verification_success" in n] == [1]
        key_file.write_text("not-a-key")
        failed = subprocess.run(
            nightly, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert receiver.at("/ping/night/fail") and receiver.at("/hook")
        assert "refused the API key" in receiver.at("/hook")[0].json()["summary"]
    finally:
        receiver.close()
    listed = json.loads(run_backup_cli("list", str(tmp_path / "snapshots"), "--json").stdout)
    verified = {Path(entry["path"]).name: entry["last_verification"] for entry in listed}
    # The broken decoy would have failed the night; prune may drop it (same day, older).
    assert verified.pop("manual-copy-before-upgrade", "never") == "never", "the decoy was verified"
    assert list(verified.values()) == ["PASSED"]
    assert failed.returncode == 1
    assert "refused the API key (401)" in failed.stderr
    assert "nightly: snapshot of n8n failed" in failed.stderr


def test_progress_on_a_terminal_and_silence_in_a_pipe(
    source: SourceInstance, tmp_path: Path
) -> None:
    args = snapshot_args(
        source.api_key, tmp_path / "out", tmp_path / "keys", *process_source_args(source)
    )
    piped = run_backup_cli(*args)
    assert piped.returncode == 0, piped.stderr
    assert (
        "exporting workflows" not in piped.stderr and "writing workflow files" not in piped.stderr
    )
    # `script` gives the command a terminal, as an operator at a shell has.
    command = " ".join(shlex.quote(part) for part in backup_command(*args))
    on_tty = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert on_tty.returncode == 0, on_tty.stdout
    assert "exporting workflows" in on_tty.stdout and "writing workflow files" in on_tty.stdout


def test_workflows_only_restore_keeps_tags_and_overwrites_when_asked(
    launcher: Path, source: SourceInstance, tmp_path: Path
) -> None:
    tag_name = f"tag-{secrets.token_hex(3)}"
    tag_id = source.api.create_tag(tag_name)
    tagged = source.api.create_workflow(sample_workflow("Tagged for restore", message="v1"))
    source.api.set_workflow_tags(str(tagged["id"]), [tag_id])
    snapshot = run_snapshot_cli(
        source.api_key, tmp_path / "snapshots", tmp_path / "keys", *process_source_args(source)
    )
    target = start_source(launcher, tmp_path / "target")
    try:
        mine = target.api.create_workflow(sample_workflow("Tagged for restore", message="mine"))
        args = api_restore_args(snapshot, target, tmp_path, tmp_path / "keys")
        kept = run_backup_cli(*args)
        assert kept.returncode == 0, kept.stdout + kept.stderr
        body = target.api.workflow(str(mine["id"]))
        assert "mine" in json.dumps(body["nodes"]), "an existing workflow was overwritten"
        overwritten = run_backup_cli(*args, "--overwrite")
        assert overwritten.returncode == 0, overwritten.stdout
        assert "0 created, " in overwritten.stdout and " 0 kept" in overwritten.stdout
        body = target.api.workflow(str(mine["id"]))
        assert "v1" in json.dumps(body["nodes"]) and "mine" not in json.dumps(body["nodes"])
        assert [t["name"] for t in body.get("tags", [])] == [tag_name]
    finally:
        target.api.close()
        target.process.close()


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("key-store-is-a-file", "key store {keys} is not a folder"),
        ("out-cannot-be-created", "cannot create --snapshots {out}"),
    ],
)
def test_unusable_key_store_or_out_leaves_no_snapshot(
    source: SourceInstance, tmp_path: Path, where: str, expected: str
) -> None:
    out, keys = tmp_path / "out", tmp_path / "keys"
    if where == "key-store-is-a-file":
        keys.write_text("a file, not a folder")
    else:
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where a folder must go")
        out = blocker / "out"
    key_file = tmp_path / "api-key"
    key_file.write_text(source.api_key)
    args = ["--api-key-file", str(key_file), "--out", str(out), "--key-store", str(keys)]
    result = run_backup_cli("snapshot", *process_source_args(source), *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert expected.format(keys=keys, out=out) in lines[0]
    assert not out.exists() or find_snapshots(out) == []
    assert "Traceback" not in result.stderr
