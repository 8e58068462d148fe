"""The public API client, with httpx.MockTransport standing in for n8n's answers."""

from __future__ import annotations

import httpx
import pytest

from backup.errors import ApiError
from backup.sources.api import PAGE_LIMIT, N8nApi, normalise_base_url


def paging_handler(total: int) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-N8N-API-KEY"] == "k"
        start = int(request.url.params.get("cursor", "0"))
        limit = int(request.url.params["limit"])
        assert limit <= PAGE_LIMIT
        items = [{"id": str(i)} for i in range(start, min(start + limit, total))]
        cursor = str(start + limit) if start + limit < total else None
        return httpx.Response(200, json={"data": items, "nextCursor": cursor})

    return httpx.MockTransport(handle)


def test_follows_next_cursor_past_the_page_limit() -> None:
    api = N8nApi("http://n8n.test", "k", transport=paging_handler(601))
    ids = [item["id"] for item in api.iter_workflows()]
    assert ids == [str(i) for i in range(601)]


def test_refused_key_is_a_one_line_error() -> None:
    api = N8nApi(
        "http://n8n.test", "k", transport=httpx.MockTransport(lambda r: httpx.Response(401))
    )
    with pytest.raises(ApiError, match=r"refused the API key \(401\)"):
        api.check_access()


def test_not_json_says_it_is_probably_not_n8n() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, text="<html>"))
    with pytest.raises(ApiError, match="is --api-url an n8n instance"):
        N8nApi("http://n8n.test", "k", transport=transport).version()


def test_unreachable_is_named() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ApiError, match=r"cannot reach n8n at http://n8n\.test"):
        N8nApi("http://n8n.test", "k", transport=httpx.MockTransport(refuse)).check_access()


@pytest.mark.parametrize(
    "url", ["http://h:5678", "http://h:5678/", "http://h:5678/api/v1", "http://h:5678/api/v1/"]
)
def test_base_url_forms(url: str) -> None:
    assert normalise_base_url(url) == "http://h:5678"


def test_base_url_needs_a_scheme() -> None:
    with pytest.raises(ApiError, match="must start with http"):
        normalise_base_url("localhost:5678")
