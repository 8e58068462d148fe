"""n8n's public API (``/api/v1``) and the unauthenticated settings endpoint, over httpx.

Every answer is untrusted input: a page, an item or a created object of the wrong shape, a
cursor that never ends, or a URL httpx cannot use ends in a one-line error (``ApiError``, or
``InputError`` for an unusable ``--api-url``), never in a traceback or an endless loop.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import re
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from backup.errors import ApiError, InputError, one_line

PAGE_LIMIT = 250  # the public API's maximum page size
MAX_PAGES = 10_000  # 2.5 million items at PAGE_LIMIT: a longer walk is a server that never ends
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_SENTRY_META = re.compile(r'name="n8n:config:sentry" content="([A-Za-z0-9+/=]+)"')
# The versions a manifest accepts (backup/manifest.py reads them back with the same pattern).
_N8N_VERSION = re.compile(r"\d{1,4}\.\d{1,4}\.\d{1,6}(?:[-+][0-9A-Za-z.-]{1,40})?")
# A host as httpx reads it: a name (letters of any script), an IPv4 or an IPv6 address.
_HOST = re.compile(r"[\w.:-]+")
_JSON_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}


def transfer_headers(base_url: str) -> dict[str, str]:
    """How answers from ``base_url`` should travel: uncompressed from this machine's loopback,
    where compressing costs n8n and us CPU and saves nothing (n8n's 17.7 MB node type list:
    0.95 s gzipped, 0.78 s plain; 5,000 workflows through the API: 2.62 s and 2.34 s)."""
    host = urllib.parse.urlsplit(base_url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
        # ::ffff:127.0.0.1 is IPv4's loopback written as IPv6 (not loopback to ipaddress).
        on_loopback = (getattr(address, "ipv4_mapped", None) or address).is_loopback
    except ValueError:
        on_loopback = host == "localhost"
    return {"Accept-Encoding": "identity"} if on_loopback else {}


def normalise_base_url(url: str) -> str:
    """Accept ``http://host:5678``, ``.../`` or ``.../api/v1`` and return the instance's root.

    Raises ``InputError`` for a URL httpx could not request (no scheme, no host, a bad port...).
    """
    given = url.strip()
    url = given.rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    problem = _url_problem(url)
    if problem:
        raise InputError(f"--api-url {given!r} is not a valid URL: {problem}")
    return url


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an n8n address, or ``None`` when it can."""
    if not url.startswith(("http://", "https://")):
        return "it must start with http:// or https://"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError when not a number or out of 0-65535
        host = httpx.URL(url).host  # a bad IDNA label raises IDNAError, a ValueError
    except (ValueError, httpx.InvalidURL) as exc:
        return one_line(str(exc))
    if not parts.hostname:
        return "it names no host"
    if port == 0:
        return "port 0 is out of range 1-65535"
    if parts.query or parts.fragment:
        return "it must not have a query (?) or a fragment (#)"
    if not _HOST.fullmatch(host):
        return f"the host {parts.hostname!r} has characters a host name cannot have"
    return None


def _check_api_key(api_key: str) -> None:
    """``InputError`` for a key an HTTP header cannot carry (the key itself is never shown)."""
    if not (api_key.isascii() and api_key.isprintable()):
        raise InputError(
            "the API key has characters an HTTP header cannot carry (printable ASCII only): "
            "give the key exactly as n8n showed it"
        )


def _kind(value: object) -> str:
    """The JSON name of ``value``'s type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _shape_error(endpoint: str, what: str) -> ApiError:
    return ApiError(f"{endpoint} answered JSON of an unexpected shape: {what}")


def _object(value: object, endpoint: str, what: str) -> dict[str, Any]:
    """``value`` when it is a JSON object; else an ``ApiError`` naming ``endpoint``."""
    if not isinstance(value, dict):
        raise _shape_error(endpoint, f"{what} is {_kind(value)}, not an object")
    return value


def _id_of(item: dict[str, Any], endpoint: str, what: str) -> str:
    """The item's ``id`` (a non-empty string or an integer) as a string."""
    value = item.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise _shape_error(endpoint, f"{what} has no id (a string or an integer)")
    return str(value)


def _page_items(page: object, endpoint: str) -> list[dict[str, Any]]:
    """The ``data`` of one list page: objects that each have an ``id``."""
    data = _object(page, endpoint, "the page").get("data")
    if not isinstance(data, list):
        raise _shape_error(endpoint, f"the page's data is {_kind(data)}, not a list")
    return [_listed(item, endpoint, f"data[{index}]") for index, item in enumerate(data)]


def _listed(value: object, endpoint: str, what: str) -> dict[str, Any]:
    """One listed item: a JSON object with an ``id``."""
    item = _object(value, endpoint, what)
    _id_of(item, endpoint, what)
    return item


def _named_id(item: dict[str, Any], endpoint: str, what: str) -> tuple[str, str]:
    """``(name, id)`` of an item that must have both, such as a tag."""
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise _shape_error(endpoint, f"{what} has no name (a non-empty string)")
    return name, _id_of(item, endpoint, what)


def _next_cursor(page: dict[str, Any], endpoint: str) -> str | None:
    """The page's ``nextCursor``, or ``None`` on the last page."""
    cursor = page.get("nextCursor")
    if cursor is None or cursor == "":
        return None
    if not isinstance(cursor, str):
        raise _shape_error(endpoint, f"nextCursor is {_kind(cursor)}, not a string")
    return cursor


def _segment(value: str) -> str:
    """``value`` quoted as one path segment: an id from a server cannot change the path."""
    return urllib.parse.quote(value, safe="")


@contextmanager
def map_request_errors(endpoint: str, base_url: str) -> Iterator[None]:
    """Translate what httpx raises while sending ``endpoint`` into one-line ``ApiError``."""
    try:
        yield
    except httpx.TransportError as exc:
        raise ApiError(
            f"cannot reach n8n at {base_url} ({type(exc).__name__}): check --api-url and that "
            "n8n is running"
        ) from None
    except httpx.HTTPError as exc:  # e.g. a body that does not decode as its Content-Encoding
        raise ApiError(
            f"{endpoint} failed ({type(exc).__name__}: {one_line(str(exc))}): is --api-url an "
            "n8n instance?"
        ) from None
    except httpx.InvalidURL as exc:
        raise ApiError(
            f"{endpoint} is not a URL httpx can request ({one_line(str(exc))}): check --api-url"
        ) from None
    except ValueError as exc:  # a host httpx cannot encode, a body JSON cannot carry (NaN)
        raise ApiError(f"cannot send {endpoint}: {one_line(str(exc))}") from None


def decode_json(response: httpx.Response, endpoint: str) -> Any:
    """The JSON of a successful answer; ``ApiError`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        raise ApiError(f"{endpoint} did not answer JSON: is --api-url an n8n instance?") from None
    except RecursionError:
        raise ApiError(f"{endpoint} answered JSON nested too deeply to read") from None


def error_detail(response: httpx.Response) -> str:
    """``": <message>"`` from an error answer's JSON object, or ``""``."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return f": {one_line(str(message))}" if message else ""


def _sentry_release(page: str) -> str | None:
    """The n8n version in the editor page's ``n8n:config:sentry`` meta tag, if any."""
    match = _SENTRY_META.search(page)
    if not match:
        return None
    try:
        config = json.loads(base64.b64decode(match.group(1)))
    except (ValueError, RecursionError):
        return None
    release = config.get("release") if isinstance(config, dict) else None
    if isinstance(release, str) and release.startswith("n8n@"):
        return release[len("n8n@") :]
    return None


def _settings_version(body: object) -> str | None:
    """``data.versionCli`` of a ``/rest/settings`` answer, if it has one."""
    data = body.get("data") if isinstance(body, dict) else None
    version = data.get("versionCli") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


WORKFLOW_FIELDS = ("name", "nodes", "connections", "settings")


def writable_workflow(workflow: dict[str, Any]) -> dict[str, Any]:
    """The fields of a workflow (an export, a file) that the API accepts on create/update."""
    body = {key: workflow[key] for key in WORKFLOW_FIELDS if key in workflow}
    body["settings"] = workflow.get("settings") or {}
    return body


class N8nApi:
    """A small client for the calls this project needs; ``transport`` is injectable for tests."""

    def __init__(
        self, base_url: str, api_key: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        _check_api_key(api_key)
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={
                "X-N8N-API-KEY": api_key,
                "Accept": "application/json",
                **transfer_headers(self.base_url),
            },
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

    def _endpoint(self, method: str, path: str) -> str:
        return f"{method} {self.base_url}{path}"

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._send("GET", path, params=params)

    def _send(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        endpoint = self._endpoint(method, path)
        with map_request_errors(endpoint, self.base_url):
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
            raise ApiError(
                f"{endpoint} answered HTTP {response.status_code}{error_detail(response)}"
            )
        return decode_json(response, endpoint)

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """The items of each page of a list endpoint, following ``nextCursor``.

        A cursor that comes back a second time, or more than ``MAX_PAGES`` pages, is an
        ``ApiError``: a server that never says "last page" must not keep us looping.
        """
        endpoint = self._endpoint("GET", path)
        seen: set[str] = set()
        query: dict[str, Any] = {**params, "limit": PAGE_LIMIT}
        for _ in range(MAX_PAGES):
            page = self._get(path, query)
            yield _page_items(page, endpoint)
            cursor = _next_cursor(page, endpoint)
            if cursor is None:
                return
            if cursor in seen:
                raise ApiError(
                    f"{endpoint}: the API returned the cursor of an earlier page again (a broken "
                    "or hostile server): check --api-url"
                )
            seen.add(cursor)
            query = {**params, "limit": PAGE_LIMIT, "cursor": cursor}
        raise ApiError(
            f"{endpoint}: the API still had more after {MAX_PAGES} pages of {PAGE_LIMIT} (a broken "
            "or hostile server): check --api-url"
        )

    def version(self) -> str:
        """The n8n version the instance runs.

        ``/rest/settings`` names it only for a signed-in user on recent n8n; the editor page
        carries it in the release of its ``n8n:config:sentry`` meta tag.
        """
        version = _settings_version(self._get("/rest/settings"))
        if version is None or not _N8N_VERSION.fullmatch(version):
            with map_request_errors(self._endpoint("GET", "/"), self.base_url):
                page = self._client.get("/", headers={"Accept": "text/html"}).text
            version = _sentry_release(page)
        if version is None or not _N8N_VERSION.fullmatch(version):
            raise ApiError(
                f"{self.base_url} does not say which n8n version it runs (as a number like "
                "1.2.3): is --api-url an n8n instance?"
            )
        return version

    def iter_workflows(
        self, *, active: bool | None = None, pinned_data: bool = True
    ) -> Iterator[dict[str, Any]]:
        """Every workflow the list endpoint returns (only the active or inactive ones when
        ``active`` says so), following ``nextCursor`` to the end, one page in memory at a time.
        ``pinned_data=False`` asks n8n to leave out the test data pinned to nodes (it can be
        megabytes per workflow) where only nodes, connections or names are needed.

        Each is a JSON object with an ``id`` (a string or an integer).
        """
        params = {} if active is None else {"active": "true" if active else "false"}
        pages = self._pages("/api/v1/workflows", params)
        if not pinned_data:
            excluding = self._pages("/api/v1/workflows", {**params, "excludePinnedData": "true"})
            try:
                first = next(excluding, None)
                pages = itertools.chain([] if first is None else [first], excluding)
            except ApiError as exc:  # n8n before 1.73 refuses a parameter it does not know
                if "HTTP 400" not in str(exc) or "excludePinnedData" not in str(exc):
                    raise
        for items in pages:
            yield from items

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        """One workflow by id."""
        path = f"/api/v1/workflows/{_segment(workflow_id)}"
        return _object(self._get(path), self._endpoint("GET", path), "the workflow")

    def create_workflow(self, workflow: dict[str, Any]) -> dict[str, Any]:
        """Create a workflow from the fields the API accepts (name, nodes, connections,
        settings; others such as an export's id or tags are left out); returns it with its id."""
        endpoint = self._endpoint("POST", "/api/v1/workflows")
        body = writable_workflow(workflow)
        created = _object(
            self._send("POST", "/api/v1/workflows", body=body), endpoint, "the answer"
        )
        _id_of(created, endpoint, "the created workflow")
        return created

    def activate_workflow(self, workflow_id: str) -> None:
        """Activate (publish) a workflow: its triggers start."""
        self._send("POST", f"/api/v1/workflows/{_segment(workflow_id)}/activate")

    def deactivate_workflow(self, workflow_id: str) -> None:
        """Deactivate a workflow: its triggers stop."""
        self._send("POST", f"/api/v1/workflows/{_segment(workflow_id)}/deactivate")

    def create_credential(self, name: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        """Create a credential; n8n encrypts ``data`` with the instance's key."""
        endpoint = self._endpoint("POST", "/api/v1/credentials")
        body = {"name": name, "type": type_, "data": data}
        created = _object(
            self._send("POST", "/api/v1/credentials", body=body), endpoint, "the answer"
        )
        _id_of(created, endpoint, "the created credential")
        return created

    def update_workflow(self, workflow_id: str, body: dict[str, Any]) -> None:
        """Replace a workflow's name, nodes, connections and settings."""
        self._send("PUT", f"/api/v1/workflows/{_segment(workflow_id)}", body=body)

    def tags(self) -> dict[str, str]:
        """Tag ids by name."""
        endpoint = self._endpoint("GET", "/api/v1/tags")
        found: dict[str, str] = {}
        for items in self._pages("/api/v1/tags", {}):
            found.update(_named_id(tag, endpoint, "a tag") for tag in items)
        return found

    def create_tag(self, name: str) -> str:
        """Create a tag; returns its id."""
        endpoint = self._endpoint("POST", "/api/v1/tags")
        created = _object(
            self._send("POST", "/api/v1/tags", body={"name": name}), endpoint, "the answer"
        )
        return _id_of(created, endpoint, "the created tag")

    def set_workflow_tags(self, workflow_id: str, tag_ids: list[str]) -> None:
        """Replace a workflow's tags."""
        body = [{"id": tag_id} for tag_id in tag_ids]
        self._send("PUT", f"/api/v1/workflows/{_segment(workflow_id)}/tags", body=body)

    def running_executions(self) -> int:
        """How many executions the instance is running now (needs the execution:list scope)."""
        return sum(len(items) for items in self._pages("/api/v1/executions", {"status": "running"}))

    def check_access(self) -> None:
        """Fail early, with a clear message, when the URL or the API key is wrong."""
        self._get("/api/v1/workflows", {"limit": 1})
