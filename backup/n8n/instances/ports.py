"""Ports on this machine's loopback: choosing free ones, and knowing who listens on one.

A port chosen free can be taken by another program before the program it was chosen for
binds it: whoever then answers on it is not believed until the listening socket is known to
belong to that program.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
# How many times a program starts on new ports when its chosen ones were taken in between.
PORT_ATTEMPTS = 3
_TCP_TABLE = Path("/proc/net/tcp")
_LISTEN_STATE = "0A"  # TCP_LISTEN in the kernel's table


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on loopback, all free right now.

    The sockets stay bound until all are chosen: one after another, the kernel may hand out
    the port it has just taken back (an n8n once got the same port for its server and its
    task broker and stopped).
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _listening_sockets(port: int) -> set[str]:
    """The listening sockets on LOOPBACK:``port``, as /proc/PID/fd links name them."""
    (address,) = struct.unpack("=I", socket.inet_aton(LOOPBACK))  # the table's byte order
    local = f"{address:08X}:{port:04X}"
    found = set()
    with _TCP_TABLE.open() as table:
        next(table)  # the header line
        for line in table:
            fields = line.split()
            if fields[1] == local and fields[3] == _LISTEN_STATE:
                found.add(f"socket:[{fields[9]}]")
    return found


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds the socket listening on LOOPBACK:``port``.

    Where the kernel's tables cannot be read (not Linux), whether anything accepts there.
    """
    if not _TCP_TABLE.exists():
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            return False
    sockets = _listening_sockets(port)
    if not sockets:
        return False
    with contextlib.suppress(OSError):  # the process ended meanwhile: it does not listen
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in sockets:
                    return True
    return False


def await_listening(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    """Wait until ``process`` itself listens on ``port`` on loopback (True) or exits (False);
    TimeoutError when neither happens within ``timeout`` seconds. Another program listening on
    that port does not count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if listens(process.pid, port):
            return True
        time.sleep(0.05)
    raise TimeoutError(
        f"{process.args!r} does not listen on {LOOPBACK}:{port} after {timeout:.0f} s"
    )
