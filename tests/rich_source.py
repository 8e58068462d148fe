"""A source n8n with everything an operator would miss after a restore: a community package
installed from the npm registry the way n8n's editor installs it, a custom node, binary data
of real executions, and the other entities (tags, data tables, users, licensed ones)."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from backup.n8n.instances.base import OUTBOUND_SINK
from tests.n8n_support import SourceInstance, seed, start_source
from verify.bootstrap import BROWSER_ID, DEMO_OWNER, sample_workflow

FIXTURES = Path(__file__).parent / "fixtures"
COMMUNITY_PACKAGE = "n8n-nodes-datastore"
COMMUNITY_VERSION = "0.1.18"
COMMUNITY_TYPE = "n8n-nodes-datastore.datastore"
CUSTOM_TYPE = "CUSTOM.rvProbe"
MISSING_TYPE = "n8n-nodes-nowhere.missingNode"
BINARY_PATH = "rv-binary"
PINNED_NODE = "Step 1"  # of the "Uses extensions" workflow, which carries pinned test data
# n8n installs community packages with npm from the registry; everything else n8n would send
# out (its package ban check at api.n8n.io among them) goes to a closed port on loopback.
INSTALL_ENV = {
    "N8N_COMMUNITY_PACKAGES_ENABLED": "true",
    "N8N_UNVERIFIED_PACKAGES_ENABLED": "true",
    "N8N_COMMUNITY_PACKAGES_REGISTRY": "https://registry.npmjs.org",
    "HTTP_PROXY": OUTBOUND_SINK,
    "HTTPS_PROXY": OUTBOUND_SINK,
    "ALL_PROXY": OUTBOUND_SINK,
    "NO_PROXY": "localhost,127.0.0.1,::1,registry.npmjs.org",
    "N8N_DEFAULT_BINARY_DATA_MODE": "filesystem",
}


@dataclass
class RichSource:
    """The running source and what was put into it."""

    source: SourceInstance
    binary_payloads: list[bytes] = field(default_factory=list)
    uses_extensions_id: str = ""


@contextmanager
def signed_in(base_url: str) -> Iterator[httpx.Client]:
    """The source's owner, signed in through n8n's login (the source's password is ours)."""
    with httpx.Client(
        base_url=f"{base_url}/rest", headers={"browser-id": BROWSER_ID}, timeout=120
    ) as rest:
        login = {"emailOrLdapLoginId": DEMO_OWNER["email"], "password": DEMO_OWNER["password"]}
        answer = rest.post("/login", json=login)
        if answer.status_code >= 400:  # older 1.x names the field "email"
            answer = rest.post("/login", json={**login, "email": login["emailOrLdapLoginId"]})
        answer.raise_for_status()
        yield rest


def _data(answer: httpx.Response) -> Any:
    answer.raise_for_status()
    return answer.json()["data"]


def extensions_workflow(name: str, *extra_types: str) -> dict[str, Any]:
    """A manual-trigger workflow through the community node and the custom node."""
    workflow = sample_workflow(name)
    trigger = workflow["nodes"][0]
    nodes = [trigger]
    chain = [(COMMUNITY_TYPE, 1), (CUSTOM_TYPE, 2), *((kind, 1) for kind in extra_types)]
    for index, (kind, version) in enumerate(chain, start=1):
        nodes.append(
            {
                "id": str(uuid.uuid4()),
                "name": f"Step {index}",
                "type": kind,
                "typeVersion": version,
                "position": [220 * index, 0],
                "parameters": {},
            }
        )
    names = [node["name"] for node in nodes]
    workflow["nodes"] = nodes
    workflow["connections"] = {
        a: {"main": [[{"node": b, "type": "main", "index": 0}]]}
        for a, b in itertools.pairwise(names)
    }
    return workflow


def binary_workflow() -> dict[str, Any]:
    """A webhook that turns the posted base64 into a file: each call leaves an execution with
    binary data (filesystem mode)."""
    return {
        "name": "Binary from webhook",
        "nodes": [
            {
                "id": "11111111-0000-4000-8000-000000000001",
                "name": "Webhook",
                "type": "n8n-nodes-base.webhook",
                "typeVersion": 2,
                "position": [0, 0],
                "webhookId": "22222222-0000-4000-8000-000000000001",
                "parameters": {
                    "httpMethod": "POST",
                    "path": BINARY_PATH,
                    "responseMode": "onReceived",
                    "options": {},
                },
            },
            {
                "id": "11111111-0000-4000-8000-000000000002",
                "name": "Convert to File",
                "type": "n8n-nodes-base.convertToFile",
                "typeVersion": 1.1,
                "position": [220, 0],
                "parameters": {
                    "operation": "toBinary",
                    "sourceProperty": "body.b64",
                    "binaryPropertyName": "data",
                    "options": {"fileName": "blob.bin", "mimeType": "application/octet-stream"},
                },
            },
        ],
        "connections": {
            "Webhook": {"main": [[{"node": "Convert to File", "type": "main", "index": 0}]]}
        },
        "settings": {"executionOrder": "v1"},
    }


def _run_binary_executions(rich: RichSource, count: int) -> None:
    """Call the binary webhook ``count`` times, each with a different payload."""
    api = rich.source.api
    created = api.create_workflow(binary_workflow())
    api.activate_workflow(str(created["id"]))
    base = rich.source.process.base_url
    for index in range(count):
        payload = bytes(range(256)) * (index + 1) + f"#{index}".encode()
        body = {"b64": base64.b64encode(payload).decode()}
        for _ in range(20):  # 2.x registers a new webhook a moment after the activation
            answer = httpx.post(f"{base}/webhook/{BINARY_PATH}", json=body, timeout=30)
            if answer.status_code != 404:
                break
            time.sleep(0.5)
        answer.raise_for_status()
        rich.binary_payloads.append(payload)
    api.deactivate_workflow(str(created["id"]))
    deadline = time.monotonic() + 60
    while api.running_executions() and time.monotonic() < deadline:
        time.sleep(0.5)


def add_free_entities(source: SourceInstance) -> None:
    """What any community instance can have besides workflows and credentials."""
    with signed_in(source.process.base_url) as rest:
        _free_entities(source, rest)


def _free_entities(source: SourceInstance, rest: httpx.Client, unedited: str | None = None) -> None:
    """Tags, a data table with rows, an invited user, a second workflow version (of another
    workflow than ``unedited``, whose name the tests look for)."""
    api = source.api
    tag_ids = [api.create_tag(name) for name in ("finance", "nightly")]
    workflows = list(api.iter_workflows())  # in n8n's order: by random ids
    for workflow in workflows[:3]:
        api.set_workflow_tags(str(workflow["id"]), tag_ids)
    edited = next(w for w in workflows if str(w["id"]) != unedited)
    api.update_workflow(
        str(edited["id"]),
        {
            "name": edited["name"] + " (edited)",
            "nodes": edited["nodes"],
            "connections": edited["connections"],
            "settings": {},
        },
    )
    project = _data(rest.get("/projects/personal"))["id"]
    table = _data(
        rest.post(
            f"/projects/{project}/data-tables",
            json={
                "name": "Customers",
                "columns": [{"name": "email", "type": "string"}, {"name": "n", "type": "number"}],
            },
        )
    )
    rows = [{"email": f"c{i}@example.com", "n": i} for i in range(5)]
    _data(
        rest.post(
            f"/projects/{project}/data-tables/{table['id']}/insert",
            json={"data": rows, "returnType": "all"},
        )
    )
    invited = httpx.post(
        f"{source.process.base_url}/api/v1/users",
        headers={"X-N8N-API-KEY": source.api_key},
        json=[{"email": "member@example.com", "role": "global:member"}],
        timeout=30,
    )
    invited.raise_for_status()


def add_licensed_entities(database: Path, owner_project: str, workflow_id: str) -> None:
    """A variable, a folder and a team project sharing a workflow: n8n creates these only with
    a licence, so they are written as a licensed instance would have left them."""
    now = "2026-01-01 00:00:00.000"
    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO variables (id, key, type, value) VALUES (?, ?, 'string', ?)",
            ("var00000000001", "REGION", "eu-central"),
        )
        conn.execute(
            'INSERT INTO folder (id, name, "parentFolderId", "projectId", "createdAt", '
            '"updatedAt") VALUES (?, ?, NULL, ?, ?, ?)',
            ("fold0000000001", "Invoices", owner_project, now, now),
        )
        conn.execute(
            'INSERT INTO project (id, name, type, "createdAt", "updatedAt") '
            "VALUES (?, ?, 'team', ?, ?)",
            ("team0000000001", "Finance team", now, now),
        )
        owner = conn.execute(
            'SELECT "userId" FROM project_relation WHERE "projectId" = ?', (owner_project,)
        ).fetchone()[0]
        conn.execute(
            'INSERT INTO project_relation ("projectId", "userId", role, "createdAt", '
            "\"updatedAt\") VALUES (?, ?, 'project:admin', ?, ?)",
            ("team0000000001", owner, now, now),
        )
        conn.execute(
            'INSERT INTO shared_workflow ("workflowId", "projectId", role, "createdAt", '
            "\"updatedAt\") VALUES (?, ?, 'workflow:editor', ?, ?)",
            (workflow_id, "team0000000001", now, now),
        )


def add_pinned_data(database: Path, workflow_id: str) -> None:
    """Test data pinned to a node, as the editor leaves it (about 200 KB: pinned data is often
    far bigger than the workflow)."""
    items = [{"json": {"row": i, "note": "pinned " * 40}} for i in range(700)]
    with sqlite3.connect(database) as conn:
        conn.execute(
            'UPDATE workflow_entity SET "pinData" = ? WHERE id = ?',
            (json.dumps({PINNED_NODE: items}), workflow_id),
        )


def start_rich_source(launcher: Path, folder: Path, *, binary_runs: int = 3) -> RichSource:
    """Boot a source with a custom node in ``.n8n/custom``, install the community package
    through n8n's editor API, and add workflows using both, binary executions and entities."""
    shutil.copytree(FIXTURES / "n8n-nodes-rv-probe", folder / ".n8n" / "custom" / "rv-probe")
    source = start_source(launcher, folder, extra_env=INSTALL_ENV)
    try:
        with signed_in(source.process.base_url) as rest:
            rich = RichSource(source)
            installed = _data(
                rest.post(
                    "/community-packages",
                    json={"name": COMMUNITY_PACKAGE, "version": COMMUNITY_VERSION},
                )
            )
            assert installed["installedVersion"] == COMMUNITY_VERSION
            created = source.api.create_workflow(extensions_workflow("Uses extensions"))
            rich.uses_extensions_id = str(created["id"])
            source.seeded_secrets = seed(source.api, corpus=True, generated=0)
            _free_entities(source, rest, unedited=rich.uses_extensions_id)
            _run_binary_executions(rich, binary_runs)
            project = _data(rest.get("/projects/personal"))["id"]
        database = source.n8n_folder / "database.sqlite"
        add_licensed_entities(database, project, rich.uses_extensions_id)
        add_pinned_data(database, rich.uses_extensions_id)
        return rich
    except BaseException:
        source.api.close()
        source.process.close()
        raise
