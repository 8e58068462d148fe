"""A notification receiver on loopback: records what n8n-restore-verify posts to it."""

from __future__ import annotations

import http.server
import json
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Answers 200 to every POST and keeps it; ``url(path)`` names a receiver on it."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.received.append(
                    Received(
                        self.path, self.headers.get("Content-Type", ""), self.rfile.read(length)
                    )
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def paths(self) -> list[str]:
        return [item.path for item in self.received]

    def at(self, path: str) -> list[Received]:
        return [item for item in self.received if item.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
