"""n8n's public API (``/api/v1``) and the unauthenticated settings endpoint, over httpx."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from backup.errors import ApiError

PAGE_LIMIT = 250  # the public API's maximum page size
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_SENTRY_META = re.compile(r'name="n8n:config:sentry" content="([A-Za-z0-9+/=]+)"')


def normalise_base_url(url: str) -> str:
    """Accept ``http://host:5678``, ``.../`` or ``.../api/v1`` and return the instance's root."""
    url = url.strip().rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    if not url.startswith(("http://", "https://")):
        raise ApiError(f"API URL {url!r} must start with http:// or https://")
    return url


@contextmanager
def _map_transport_errors(base_url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as exc:
        raise ApiError(
            f"cannot reach n8n at {base_url} ({type(exc).__name__}): check --api-url and that "
            "n8n is running"
        ) from None


class N8nApi:
    """A small client for the calls this project needs; ``transport`` is injectable for tests."""

    def __init__(
        self, base_url: str, api_key: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"X-N8N-API-KEY": api_key, "Accept": "application/json"},
            timeout=DEFAULT_TIMEOUT,
            transport=transport,
        )

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._client.close()

    def __enter__(self) -> N8nApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._send("GET", path, params=params)

    def _send(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        with _map_transport_errors(self.base_url):
            response = self._client.request(method, path, params=params, json=body)
        if response.status_code == 401:
            raise ApiError(
                f"n8n at {self.base_url} refused the API key (401): give a valid key with "
                "--api-key-file or N8N_API_KEY"
            )
        if response.status_code == 404 and path.startswith("/api/v1"):
            raise ApiError(
                f"{self.base_url}{path} answered 404: is the public API enabled "
                "(N8N_PUBLIC_API_DISABLED) and is --api-url the n8n address?"
            )
        if response.status_code >= 400:
            detail = ""
            with contextlib.suppress(ValueError, AttributeError):
                detail = ": " + str(response.json().get("message", ""))[:200]
            raise ApiError(
                f"{method} {self.base_url}{path} answered HTTP {response.status_code}{detail}"
            )
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"{method} {self.base_url}{path} did not answer JSON: is --api-url an n8n instance?"
            ) from None

    def version(self) -> str:
        """The n8n version the instance runs.

        ``/rest/settings`` names it only for a signed-in user on recent n8n; the editor page
        carries it in the release of its ``n8n:config:sentry`` meta tag.
        """
        body = self._get("/rest/settings")
        version = body.get("data", {}).get("versionCli") if isinstance(body, dict) else None
        if isinstance(version, str):
            return version
        with _map_transport_errors(self.base_url):
            page = self._client.get("/", headers={"Accept": "text/html"}).text
        match = _SENTRY_META.search(page)
        if match:
            try:
                release = json.loads(base64.b64decode(match.group(1))).get("release", "")
            except ValueError:
                release = ""
            if isinstance(release, str) and release.startswith("n8n@"):
                return release[len("n8n@") :]
        raise ApiError(f"{self.base_url} does not say which n8n version it runs")

    def iter_workflows(self) -> Iterator[dict[str, Any]]:
        """Every workflow the list endpoint returns, following ``nextCursor`` to the end."""
        params: dict[str, Any] = {"limit": PAGE_LIMIT}
        while True:
            page = self._get("/api/v1/workflows", params)
            yield from page.get("data", [])
            cursor = page.get("nextCursor")
            if not cursor:
                return
            params = {"limit": PAGE_LIMIT, "cursor": cursor}

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        """One workflow by id."""
        body = self._get(f"/api/v1/workflows/{workflow_id}")
        if not isinstance(body, dict):
            raise ApiError(f"workflow {workflow_id}: unexpected answer from the API")
        return body

    def create_workflow(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a workflow; returns it with its new id."""
        return dict(self._send("POST", "/api/v1/workflows", body=body))

    def update_workflow(self, workflow_id: str, body: dict[str, Any]) -> None:
        """Replace a workflow's name, nodes, connections and settings."""
        self._send("PUT", f"/api/v1/workflows/{workflow_id}", body=body)

    def tags(self) -> dict[str, str]:
        """Tag ids by name."""
        found: dict[str, str] = {}
        params: dict[str, Any] = {"limit": PAGE_LIMIT}
        while True:
            page = self._get("/api/v1/tags", params)
            found.update({str(tag["name"]): str(tag["id"]) for tag in page.get("data", [])})
            if not page.get("nextCursor"):
                return found
            params = {"limit": PAGE_LIMIT, "cursor": page["nextCursor"]}

    def create_tag(self, name: str) -> str:
        """Create a tag; returns its id."""
        return str(self._send("POST", "/api/v1/tags", body={"name": name})["id"])

    def set_workflow_tags(self, workflow_id: str, tag_ids: list[str]) -> None:
        """Replace a workflow's tags."""
        body = [{"id": tag_id} for tag_id in tag_ids]
        self._send("PUT", f"/api/v1/workflows/{workflow_id}/tags", body=body)

    def running_executions(self) -> int:
        """How many executions the instance is running now (needs the execution:list scope)."""
        params: dict[str, Any] = {"status": "running", "limit": PAGE_LIMIT}
        count = 0
        while True:
            page = self._get("/api/v1/executions", params)
            count += len(page.get("data", []))
            cursor = page.get("nextCursor")
            if not cursor:
                return count
            params = {"status": "running", "limit": PAGE_LIMIT, "cursor": cursor}

    def check_access(self) -> None:
        """Fail early, with a clear message, when the URL or the API key is wrong."""
        self._get("/api/v1/workflows", {"limit": 1})
