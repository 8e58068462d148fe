"""Handing files to their owner (n8n's user) without following links."""

from __future__ import annotations

import os
from pathlib import Path


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """chown ``path`` and everything under it; links are changed, never followed."""
    os.chown(path, uid, gid, follow_symlinks=False)
    if path.is_symlink() or not path.is_dir():
        return
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in [*dirs, *files]:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)
