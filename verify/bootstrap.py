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


class PublicApi:
    """Write access to the public API, for seeding instances."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.client = httpx.Client(
            base_url=f"{base_url}/api/v1", headers={"X-N8N-API-KEY": api_key}, timeout=30
        )

    def create_workflow(self, workflow: dict[str, Any]) -> dict[str, Any]:
        """Create a workflow from name, nodes, connections and settings."""
        body: dict[str, Any] = {
            key: workflow[key] for key in ("name", "nodes", "connections") if key in workflow
        }
        body["settings"] = workflow.get("settings") or {}
        return dict(_checked(self.client.post("/workflows", json=body), "create workflow"))

    def activate_workflow(self, workflow_id: str) -> None:
        """Activate (publish) a workflow."""
        _checked(self.client.post(f"/workflows/{workflow_id}/activate"), "activate workflow")

    def create_credential(self, name: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        """Create a credential; n8n encrypts ``data`` with the instance key."""
        response = self.client.post(
            "/credentials", json={"name": name, "type": type_, "data": data}
        )
        return dict(_checked(response, f"create credential of type {type_}"))

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


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
