"""What the benchmarks share: a throwaway n8n on loopback filled from the real-workflow corpus,
and the peak memory of a process tree.

The corpus is read from ../shared (never copied into the project); --workflows beyond its size
cycles it with numbered names.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backup.n8n import npm
from backup.n8n.api import N8nApi
from backup.n8n.instances.process import N8nProcess
from verify.bootstrap import create_owner_and_api_key

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus" / "real-workflows"
PAGE = os.sysconf("SC_PAGE_SIZE")
SEEDING_CLIENTS = 4  # n8n answers the API on one thread; a few clients keep it busy
# n8n 1.x on SQLite fails concurrent writes through the API now and then ("SQLITE_ERROR: no
# such savepoint: typeorm_2", seen with 1.123.81): one client there.
SEEDING_CLIENTS_1X = 1
EXECUTION_BYTES = 50_000
WORDS = [f"w{index:04x}" for index in range(4096)]


def corpus_workflows(count: int) -> Iterator[dict[str, Any]]:
    """``count`` workflows of the real-workflow corpus, cycled, each with its own name."""
    corpus = [json.loads(path.read_text()) for path in sorted(CORPUS.glob("*.json"))]
    for index in range(count):
        workflow = dict(corpus[index % len(corpus)])
        workflow["name"] = f"{workflow['name']} #{index}"
        yield workflow


@dataclass(frozen=True)
class Throwaway:
    """A running throwaway n8n: its process, its public API and that API's key."""

    process: N8nProcess
    api: N8nApi
    api_key: str = field(repr=False)


@contextmanager
def throwaway_n8n(
    work: Path, workflows: int, credentials: int = 0, version: str = npm.DEFAULT_N8N_VERSION
) -> Iterator[Throwaway]:
    """A fresh n8n (process runtime) in ``work``/n8n with an owner, an API key, ``workflows``
    corpus workflows and ``credentials`` header-auth credentials; stopped on exit."""
    launcher = npm.install(version, log=False)
    (work / "n8n").mkdir()
    with N8nProcess(launcher, work / "n8n", None, boot_timeout=240) as n8n:
        api_key = create_owner_and_api_key(n8n.base_url)
        api = N8nApi(n8n.base_url, api_key)
        clients = SEEDING_CLIENTS_1X if version.startswith("1.") else SEEDING_CLIENTS
        with api, ThreadPoolExecutor(clients) as seeding:
            list(seeding.map(api.create_workflow, corpus_workflows(workflows)))
            list(seeding.map(lambda index: _credential(api, index), range(credentials)))
            yield Throwaway(n8n, api, api_key)


def _credential(api: N8nApi, index: int) -> None:
    api.create_credential(
        f"bench {index}", "httpHeaderAuth", {"name": "X-Key", "value": f"v{index}"}
    )


def add_executions(database: Path, count: int, workflow_ids: list[str], rng: random.Random) -> None:
    """Finished executions with run data of about EXECUTION_BYTES each (text that compresses
    like real JSON run data, not like zeros), written into n8n's SQLite file as n8n writes them."""
    with sqlite3.connect(database, timeout=60) as connection:
        for _ in range(count):
            workflow_id = rng.choice(workflow_ids)
            cursor = connection.execute(
                'INSERT INTO execution_entity ("workflowId", finished, mode, status, "startedAt", '
                '"stoppedAt") VALUES (?, 1, ?, ?, datetime(), datetime())',
                (workflow_id, "trigger", "success"),
            )
            words = " ".join(rng.choices(WORDS, k=EXECUTION_BYTES // 6))
            data = json.dumps([{"json": {"item": words, "n": rng.random()}}])
            connection.execute(
                'INSERT INTO execution_data ("executionId", "workflowData", data) VALUES (?, ?, ?)',
                (cursor.lastrowid, json.dumps({"id": workflow_id}), data),
            )


def tree_rss(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(proc.name)] = int(fields[1])
            rss[int(proc.name)] = int((proc / "statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(rss.get(pid, 0) for pid in tree)


def verify_command(snapshots: Path, keys: Path, *extra: str) -> list[str]:
    """``pytest verify`` on the snapshots under ``snapshots`` (process runtime, no cache)."""
    return [
        sys.executable, "-m", "pytest", str(ROOT / "verify"), "--snapshots", str(snapshots),
        "--key-store", str(keys), "--runtime", "process", "-q", "-p", "no:cacheprovider", *extra,
    ]  # fmt: skip


def timed_command(command: list[str], cwd: Path) -> tuple[float, int, int]:
    """Run ``command``; return its wall seconds, its exit code and the peak memory of its whole
    process tree in bytes (sampled every 0.1 s)."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    return seconds, code, peak
