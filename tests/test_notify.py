"""Notifications reach a real receiver on loopback: a JSON webhook, a Slack-compatible one and
healthchecks.io-style pings, for passing and failing runs; webhooks hear nothing of a passing
run unless asked; a receiver that is down never fails the backup."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_support import run_backup_cli
from tests.docker_support import PROCESS_ARGS
from tests.n8n_support import TakenSnapshot
from tests.receiver import Receiver
from tests.verify_runner import run_verify, wrong_key_store


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def _notify_args(receiver: Receiver) -> list[str]:
    return [
        "--notify",
        receiver.url("/hook"),
        "--notify",
        "slack+" + receiver.url("/slack"),
        "--notify",
        "ping+" + receiver.url("/ping/abc"),
    ]


def test_a_passing_prune_pings_and_tells_webhooks_only_when_asked(
    receiver: Receiver, tmp_path: Path
) -> None:
    root = tmp_path / "snapshots"
    root.mkdir()
    quiet = run_backup_cli("prune", str(root), *_notify_args(receiver))
    assert quiet.returncode == 0, quiet.stderr
    assert receiver.paths() == ["/ping/abc/start", "/ping/abc"]  # webhooks: failures only
    told = run_backup_cli("prune", str(root), *_notify_args(receiver), "--notify-on", "always")
    assert told.returncode == 0, told.stderr
    (hook,) = receiver.at("/hook")
    assert hook.content_type == "application/json"
    assert hook.json()["verdict"] == "PASSED" and hook.json()["job"] == "prune"
    (slack,) = receiver.at("/slack")
    assert set(slack.json()) == {"text"} and "prune" in slack.json()["text"]


def test_a_failing_command_is_told_everywhere_and_a_dead_receiver_is_only_said(
    receiver: Receiver, tmp_path: Path
) -> None:
    dead = "http://127.0.0.1:9/hook-token-7f3a"  # nothing listens on port 9
    failed = run_backup_cli(
        "prune", str(tmp_path / "missing"), *_notify_args(receiver), "--notify", dead
    )
    assert failed.returncode != 0
    assert "is not a folder" in receiver.at("/hook")[0].json()["summary"]
    assert "FAILED" in receiver.at("/slack")[0].json()["text"]
    (fail,) = receiver.at("/ping/abc/fail")
    assert b"FAILED" in fail.body
    lines = failed.stderr.strip().splitlines()
    assert "cannot notify the webhook at http://127.0.0.1" in failed.stderr
    assert "hook-token-7f3a" not in failed.stderr, "a receiver's path (its token) was printed"
    assert lines[-1].startswith("n8n-backup: error:"), "the command's own error stays last"


def test_a_failing_verify_is_told_with_its_first_cause(
    pytester: pytest.Pytester, receiver: Receiver, taken: TakenSnapshot, tmp_path: Path
) -> None:
    keys = wrong_key_store(tmp_path / "wrong", taken.path, "definitely-the-wrong-key-000")
    run = run_verify(
        pytester, taken.path, keys, *PROCESS_ARGS, "--quiet-seconds", "1", *_notify_args(receiver)
    )
    assert run.result.ret == 1
    assert receiver.at("/ping/abc/start") and receiver.at("/ping/abc/fail")
    (hook,) = receiver.at("/hook")
    body = hook.json()
    assert body["job"] == "verify" and body["verdict"] == "FAILED"
    (entry,) = body["details"]["entries"]
    assert entry["causes"][0].startswith("test_manifest_authentic: manifest: key file")
    assert "test_manifest_authentic" in receiver.at("/slack")[0].json()["text"]
    for item in receiver.received:
        assert b"definitely-the-wrong-key" not in item.body
