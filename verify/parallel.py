"""Verifying in parallel: how many pytest-xdist workers a machine carries (``-n auto``,
bounded by memory as well as cores: each worker boots its own n8n), the scheduler that keeps a
snapshot-and-target group on one worker, which groups a CI machine's shard verifies, and how
an interruption of the controller reaches the workers."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from backup.processes import children

# What one booted n8n with a restored instance takes, measured on 2.40.7 (about 700 MB at peak
# for 5,000 workflows); with verify's own process beside it.
N8N_WORKER_BYTES = 800 * 1024 * 1024
MEMINFO = Path("/proc/meminfo")


def available_memory(meminfo: Path = MEMINFO) -> int | None:
    """The memory the kernel says is available for new work (MemAvailable), in bytes."""
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def parallel_workers(cores: int, memory: int | None) -> int:
    """Workers for ``-n auto``: one per core, no more than memory holds, at least one."""
    by_memory = cores if memory is None else memory // N8N_WORKER_BYTES
    return max(1, min(cores, by_memory))


def snapshot_group(nodeid: str) -> str:
    """The group a verify test belongs to: its snapshot-and-target (the test's parameter id,
    ``test_files[<case id>]`` -> ``<case id>``); any other test is a group of its own."""
    name = nodeid.rsplit("::", 1)[-1]
    if "[" in name and name.endswith("]"):
        return name.split("[", 1)[1][:-1]
    return nodeid


def snapshot_scheduler(config: Any, log: Any) -> Any:
    """pytest-xdist's scope scheduler, scoped by snapshot-and-target: each group's checks run
    on one worker, which boots its n8n once (xdist's own ``loadgroup`` relies on rewriting test
    ids, which pytest 9 no longer reads)."""
    from xdist.scheduler import LoadScopeScheduling

    class SnapshotGroups(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return snapshot_group(nodeid)

    return SnapshotGroups(config, log)


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard K/N`` -> (K, N), 1 <= K <= N; ValueError otherwise."""
    index, _, count = text.partition("/")
    shard, shards = int(index), int(count)
    if not 1 <= shard <= shards:
        raise ValueError(text)
    return shard, shards


def shard_groups(groups: list[str], shard: int, shards: int) -> set[str]:
    """This shard's snapshot-and-target groups: every N-th of them in name order, starting at
    the K-th. Every machine of a CI matrix gets the same snapshots (the same folder, or the same
    --repo-snapshots), so they agree without talking and cover each group exactly once."""
    return {group for index, group in enumerate(sorted(set(groups))) if index % shards == shard - 1}


def interrupt_workers(config: Any) -> None:
    """Pass SIGTERM or SIGHUP of pytest-xdist's controller on to its workers (its child
    processes) as SIGTERM, which they take as Ctrl-C: each stops its n8n and removes its
    restored copy at once, while xdist waits for it, instead of hearing of it from xdist 5 s
    later and being killed before it is done. Not SIGINT: a run started in the background by
    a script (`cmd &`) has SIGINT ignored, and so have its workers."""
    if config.pluginmanager.get_plugin("dsession") is None:
        return  # not a controller: this process does the work itself
    for worker in children(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGTERM)
