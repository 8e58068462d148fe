"""Setting up a fresh n8n over HTTP: owner account, public API key, sample content.

Used by the demo and by this project's tests to make instances worth backing up.
"""

from __future__ import annotations

from typing import Any

import httpx

from backup.errors import BackupError

BROWSER_ID = "n8n-restore-verify"  # n8n ties its auth cookie to this header
DEMO_OWNER = {
    "email": "owner@example.com",
    "firstName": "Restore",
    "lastName": "Verify",
    "password": "Restore-Verify-0wner",
}


class BootstrapError(BackupError):
    """A fresh instance refused a set-up step."""


def _checked(response: httpx.Response, step: str) -> Any:
    if response.status_code >= 400:
        raise BootstrapError(f"{step}: HTTP {response.status_code} {response.text[:200]}")
    return response.json()


def create_owner_and_api_key(base_url: str, owner: dict[str, str] | None = None) -> str:
    """Create the owner on a fresh instance and return a new public API key with every scope."""
    with httpx.Client(base_url=base_url, headers={"browser-id": BROWSER_ID}, timeout=30) as rest:
        _checked(rest.post("/rest/owner/setup", json=owner or DEMO_OWNER), "owner setup")
        scopes = _checked(rest.get("/rest/api-keys/scopes"), "API key scopes")["data"]
        created = _checked(
            rest.post(
                "/rest/api-keys",
                json={"label": "n8n-restore-verify", "scopes": scopes, "expiresAt": None},
            ),
            "API key creation",
        )
    return str(created["data"]["rawApiKey"])


def sample_workflow(name: str, *, message: str = "hello") -> dict[str, Any]:
    """A small manual-trigger workflow with a Set node; nothing in it runs by itself."""
    return {
        "name": name,
        "nodes": [
            {
                "id": "a1b2c3d4-0000-4000-8000-000000000001",
                "name": "When clicking 'Execute workflow'",
                "type": "n8n-nodes-base.manualTrigger",
                "typeVersion": 1,
                "position": [0, 0],
                "parameters": {},
            },
            {
                "id": "a1b2c3d4-0000-4000-8000-000000000002",
                "name": "Set message",
                "type": "n8n-nodes-base.set",
                "typeVersion": 3.4,
                "position": [220, 0],
                "parameters": {
                    "assignments": {
                        "assignments": [
                            {"id": "m1", "name": "message", "value": message, "type": "string"}
                        ]
                    },
                    "options": {},
                },
            },
        ],
        "connections": {
            "When clicking 'Execute workflow'": {
                "main": [[{"node": "Set message", "type": "main", "index": 0}]]
            }
        },
        "settings": {"executionOrder": "v1"},
    }


def sample_credentials(marker: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Credentials of three types as (name, type, data); ``marker`` makes each secret unique."""
    return [
        ("Basic auth ✓", "httpBasicAuth", {"user": "demo", "password": f"basic-{marker}"}),
        ("Header token", "httpHeaderAuth", {"name": "X-Token", "value": f"header-{marker}"}),
        ("Query key", "httpQueryAuth", {"name": "api_key", "value": f"query-{marker}"}),
    ]
