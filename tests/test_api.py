"""The public API client, with httpx.MockTransport standing in for n8n's answers."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
import pytest

from backup.errors import ApiError, InputError
from backup.n8n import api as api_module
from backup.n8n.api import PAGE_LIMIT, N8nApi, normalise_base_url, transfer_headers


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
    with pytest.raises(InputError, match="must start with http"):
        normalise_base_url("localhost:5678")


# --- untrusted answers: paging -----------------------------------------------------------------

BASE = "http://n8n.test"
ITEM = {"id": "1", "name": "tag-1"}  # serves as a workflow, a tag and an execution

# Each paged call, with the path it lists.
PAGED: list[tuple[str, Callable[[N8nApi], object]]] = [
    ("/api/v1/workflows", lambda api: list(api.iter_workflows())),
    ("/api/v1/tags", lambda api: api.tags()),
    ("/api/v1/executions", lambda api: api.running_executions()),
]
PAGED_IDS = ["workflows", "tags", "executions"]


class Recorder:
    """A MockTransport handler that answers from ``answer`` and records every request."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def api(self) -> N8nApi:
        return N8nApi(BASE, "k", transport=httpx.MockTransport(self))


def answer_json(body: object, status: int = 200) -> Recorder:
    content = json.dumps(body).encode()  # httpx.Response(json=None) would send no body at all
    return Recorder(lambda request: httpx.Response(status, content=content))


def cursor_map(next_of: dict[str | None, str | None]) -> Recorder:
    """Pages whose ``nextCursor`` is ``next_of[cursor the request carried]``."""

    def answer(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        return httpx.Response(200, json={"data": [ITEM], "nextCursor": next_of[cursor]})

    return Recorder(answer)


@pytest.mark.parametrize(("path", "call"), PAGED, ids=PAGED_IDS)
def test_endless_cursor_ends_after_two_requests(
    path: str, call: Callable[[N8nApi], object]
) -> None:
    server = Recorder(lambda r: httpx.Response(200, json={"data": [ITEM], "nextCursor": "same"}))
    with pytest.raises(ApiError, match="cursor of an earlier page again") as caught:
        call(server.api())
    assert str(caught.value).startswith(f"GET {BASE}{path}: ")
    assert "check --api-url" in str(caught.value)
    assert len(server.requests) == 2


@pytest.mark.parametrize(("path", "call"), PAGED, ids=PAGED_IDS)
def test_cursor_cycle_is_an_error(path: str, call: Callable[[N8nApi], object]) -> None:
    server = cursor_map({None: "A", "A": "B", "B": "A"})
    with pytest.raises(ApiError, match=f"^GET {BASE}{path}: the API returned the cursor"):
        call(server.api())
    assert [r.url.params.get("cursor") for r in server.requests] == [None, "A", "B"]


@pytest.mark.parametrize(("path", "call"), PAGED, ids=PAGED_IDS)
def test_page_cap_ends_a_walk_that_never_ends(
    path: str, call: Callable[[N8nApi], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_module, "MAX_PAGES", 3)
    server = Recorder(
        lambda r: httpx.Response(
            200, json={"data": [ITEM], "nextCursor": f"c{r.url.params.get('cursor')}"}
        )
    )
    with pytest.raises(ApiError, match=f"^GET {BASE}{path}: .* after 3 pages of {PAGE_LIMIT}"):
        call(server.api())
    assert len(server.requests) == 3


def test_page_cap_allows_exactly_max_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_module, "MAX_PAGES", 3)
    server = cursor_map({None: "A", "A": "B", "B": None})
    assert server.api().running_executions() == 3


def test_default_page_cap_is_sane() -> None:
    assert 1_000 <= api_module.MAX_PAGES * PAGE_LIMIT // 1_000 <= 10_000


@pytest.mark.parametrize("last", [None, ""], ids=["null", "empty"])
def test_a_null_or_empty_cursor_ends_the_walk(last: str | None) -> None:
    server = cursor_map({None: "A", "A": last})
    assert server.api().tags() == {"tag-1": "1"}
    assert len(server.requests) == 2


def test_running_executions_sends_status_and_limit_on_every_page() -> None:
    server = cursor_map({None: "A", "A": None})
    assert server.api().running_executions() == 2
    for request in server.requests:
        assert request.url.params["status"] == "running"
        assert request.url.params["limit"] == str(PAGE_LIMIT)


def test_workflows_without_pinned_data_ask_so_on_every_page() -> None:
    server = cursor_map({None: "A", "A": None})
    assert len(list(server.api().iter_workflows(pinned_data=False))) == 2
    assert [r.url.params.get("excludePinnedData") for r in server.requests] == ["true", "true"]
    server = cursor_map({None: None})
    list(server.api().iter_workflows())
    assert "excludePinnedData" not in server.requests[0].url.params


def test_an_n8n_that_does_not_know_excluding_pinned_data_is_asked_without_it() -> None:
    """n8n before 1.73 validates the query and refuses a parameter it does not know."""

    def answer(request: httpx.Request) -> httpx.Response:
        if "excludePinnedData" in request.url.params:
            message = "request/query Unknown query parameter 'excludePinnedData'"
            return httpx.Response(400, json={"message": message})
        return httpx.Response(200, json={"data": [ITEM], "nextCursor": None})

    server = Recorder(answer)
    assert len(list(server.api().iter_workflows(pinned_data=False))) == 1
    assert len(server.requests) == 2
    refusing = answer_json({"message": "something else"}, status=400)
    with pytest.raises(ApiError, match="HTTP 400: something else"):
        list(refusing.api().iter_workflows(pinned_data=False))


# --- untrusted answers: shapes -----------------------------------------------------------------

BAD_PAGES = {
    "page-list": [ITEM],
    "page-string": "workflows",
    "page-null": None,
    "data-missing": {"nextCursor": None},
    "data-object": {"data": {"0": ITEM}},
    "data-string": {"data": "x"},
    "item-string": {"data": ["1"]},
    "item-list": {"data": [[ITEM]]},
    "item-no-id": {"data": [{"name": "x"}]},
    "id-null": {"data": [{"id": None, "name": "x"}]},
    "id-bool": {"data": [{"id": True, "name": "x"}]},
    "id-empty": {"data": [{"id": "", "name": "x"}]},
    "id-float": {"data": [{"id": 1.5, "name": "x"}]},
    "id-object": {"data": [{"id": {}, "name": "x"}]},
    "cursor-number": {"data": [ITEM], "nextCursor": 5},
    "cursor-object": {"data": [ITEM], "nextCursor": {"a": 1}},
}


@pytest.mark.parametrize("page", list(BAD_PAGES.values()), ids=list(BAD_PAGES))
@pytest.mark.parametrize(("path", "call"), PAGED, ids=PAGED_IDS)
def test_wrong_page_shape_is_a_one_line_error(
    path: str, call: Callable[[N8nApi], object], page: object
) -> None:
    with pytest.raises(ApiError) as caught:
        call(answer_json(page).api())
    assert_shape_error(caught.value, f"GET {BASE}{path}")


def assert_shape_error(error: ApiError, endpoint: str) -> None:
    message = str(error)
    assert message.startswith(f"{endpoint} answered JSON of an unexpected shape: "), message
    assert "\n" not in message


@pytest.mark.parametrize(
    "tag",
    [{"id": "1"}, {"id": "1", "name": None}, {"id": "1", "name": ""}, {"id": "1", "name": 7}],
    ids=["no-name", "name-null", "name-empty", "name-number"],
)
def test_tag_without_a_name_is_an_error(tag: dict[str, object]) -> None:
    with pytest.raises(ApiError, match="a tag has no name") as caught:
        answer_json({"data": [tag], "nextCursor": None}).api().tags()
    assert_shape_error(caught.value, f"GET {BASE}/api/v1/tags")


def test_integer_ids_are_accepted_as_strings() -> None:
    page = {"data": [{"id": 7, "name": "seven"}], "nextCursor": None}
    assert answer_json(page).api().tags() == {"seven": "7"}
    assert [w["id"] for w in answer_json(page).api().iter_workflows()] == [7]
    assert answer_json({"id": 3, "name": "new"}).api().create_tag("new") == "3"


BAD_CREATED = {
    "list": [{"id": "1"}],
    "string": "1",
    "null": None,
    "no-id": {"name": "x"},
    "id-null": {"id": None},
    "id-bool": {"id": False},
    "id-list": {"id": ["1"]},
}


@pytest.mark.parametrize("answer", list(BAD_CREATED.values()), ids=list(BAD_CREATED))
@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/api/v1/workflows", lambda api: api.create_workflow({"name": "w"})),
        ("/api/v1/tags", lambda api: api.create_tag("t")),
    ],
    ids=["create_workflow", "create_tag"],
)
def test_wrong_created_shape_is_a_one_line_error(
    path: str, call: Callable[[N8nApi], object], answer: object
) -> None:
    with pytest.raises(ApiError) as caught:
        call(answer_json(answer).api())
    assert_shape_error(caught.value, f"POST {BASE}{path}")


@pytest.mark.parametrize("answer", [[], "x", None, 1], ids=["list", "string", "null", "number"])
def test_workflow_that_is_not_an_object_is_an_error(answer: object) -> None:
    with pytest.raises(ApiError) as caught:
        answer_json(answer).api().workflow("abc")
    assert_shape_error(caught.value, f"GET {BASE}/api/v1/workflows/abc")


def test_workflow_id_cannot_change_the_path() -> None:
    server = answer_json({"id": "x"})
    server.api().workflow("../../rest/owner?x=1")
    server.api().update_workflow("a/b", {})
    server.api().set_workflow_tags("a b", ["1"])
    assert [r.url.raw_path for r in server.requests] == [
        b"/api/v1/workflows/..%2F..%2Frest%2Fowner%3Fx%3D1",
        b"/api/v1/workflows/a%2Fb",
        b"/api/v1/workflows/a%20b/tags",
    ]


def test_json_nested_too_deeply_is_an_error() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    server = Recorder(lambda r: httpx.Response(200, text=deep))
    with pytest.raises(ApiError, match=f"GET {BASE}/api/v1/workflows answered JSON nested"):
        list(server.api().iter_workflows())


@pytest.mark.parametrize(
    "body",
    [[1, 2], "oops", None, {"message": ["a", "b"]}, {"no": "message"}],
    ids=["list", "string", "null", "message-list", "no-message"],
)
def test_error_answer_of_any_shape_is_one_line(body: object) -> None:
    with pytest.raises(ApiError, match=f"^GET {BASE}/api/v1/workflows answered HTTP 500"):
        answer_json(body, status=500).api().check_access()


def test_error_message_from_the_server_is_kept_on_one_line() -> None:
    body = {"message": "bad\nthing\x1b[31m " + "x" * 500}
    with pytest.raises(ApiError) as caught:
        answer_json(body, status=400).api().check_access()
    message = str(caught.value)
    assert message.startswith(f"GET {BASE}/api/v1/workflows answered HTTP 400: bad thing [31m")
    assert message.isprintable()
    assert len(message) < 300


# --- untrusted answers: version ----------------------------------------------------------------


def sentry_page(config: object) -> str:
    encoded = base64.b64encode(json.dumps(config).encode()).decode()
    return f'<html><meta name="n8n:config:sentry" content="{encoded}"></html>'


def settings_then_page(settings: object, page: str) -> Recorder:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/rest/settings":
            return httpx.Response(200, content=json.dumps(settings).encode())
        return httpx.Response(200, text=page)

    return Recorder(answer)


@pytest.mark.parametrize(
    "settings",
    [
        [],
        "1.2.3",
        None,
        {"data": []},
        {"data": "1.2.3"},
        {"data": {"versionCli": 5}},
        {"data": {"versionCli": "1.2.3; rm -rf /"}},
    ],
    ids=["list", "string", "null", "data-list", "data-string", "number", "not-a-version"],
)
@pytest.mark.parametrize(
    "page",
    ["<html></html>", sentry_page([1]), sentry_page({"release": 5}), sentry_page("n8n@1.2.3")],
    ids=["no-meta", "meta-list", "release-number", "meta-string"],
)
def test_version_of_an_odd_server_is_a_one_line_error(settings: object, page: str) -> None:
    with pytest.raises(ApiError, match=f"^{BASE} does not say which n8n version it runs"):
        settings_then_page(settings, page).api().version()


def test_version_rejects_a_release_that_is_not_a_version() -> None:
    page = sentry_page({"release": "n8n@1.2.3\nextra"})
    with pytest.raises(ApiError, match="does not say which n8n version"):
        settings_then_page({}, page).api().version()


def test_version_from_settings_or_from_the_editor_page() -> None:
    assert settings_then_page({"data": {"versionCli": "1.64.0"}}, "").api().version() == "1.64.0"
    page = sentry_page({"release": "n8n@1.70.1"})
    assert settings_then_page({"data": {}}, page).api().version() == "1.70.1"


# --- invalid URLs and request errors -----------------------------------------------------------


def never_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request should be sent, got {request.url}")


@pytest.mark.parametrize(
    "url",
    [
        "http://[bad",
        "http://h]:5678",
        "http://exa mple",
        "http://exa%20mple",
        "http://h:99999",
        "http://h:65536",
        "http://h:-1",
        "http://h:0",
        "http://h:abc",
        "http://",
        "http:///api/v1",
        "http://xn--zz",
        "http://h\x00",
        "http://h/?x=1",
        "http://h/#top",
        "localhost:5678",
        "ftp://h",
    ],
)
def test_invalid_url_is_an_input_error(url: str) -> None:
    with pytest.raises(InputError) as caught:
        N8nApi(url, "k", transport=httpx.MockTransport(never_called))
    message = str(caught.value)
    assert message.startswith(f"--api-url {url.strip()!r} is not a valid URL: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://[::1]:5678/api/v1", "http://[::1]:5678"),
        ("https://n8n.example.com/", "https://n8n.example.com"),
        ("http://n8n_app:5678", "http://n8n_app:5678"),
        ("http://127.0.0.1:65535", "http://127.0.0.1:65535"),
        ("http://user:pw@h/n8n", "http://user:pw@h/n8n"),
    ],
)
def test_valid_urls_are_kept(url: str, base: str) -> None:
    assert N8nApi(url, "k", transport=httpx.MockTransport(never_called)).base_url == base


@pytest.mark.parametrize("key", ["clé", "a\nb", "a\x00b"], ids=["non-ascii", "newline", "nul"])
def test_api_key_a_header_cannot_carry_is_an_input_error(key: str) -> None:
    with pytest.raises(InputError, match="API key has characters") as caught:
        N8nApi(BASE, key, transport=httpx.MockTransport(never_called))
    assert key not in str(caught.value)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.InvalidURL("Invalid port: 'x'"), "is not a URL httpx can request"),
        (httpx.UnsupportedProtocol("no"), "cannot reach n8n at"),
        (httpx.DecodingError("bad gzip"), r"failed \(DecodingError: bad gzip\)"),
        (ValueError("Invalid A-label"), "cannot send GET"),
    ],
    ids=["invalid-url", "unsupported-protocol", "decoding", "value-error"],
)
def test_request_time_errors_are_api_errors(error: Exception, expected: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(ApiError, match=expected):
        N8nApi(BASE, "k", transport=httpx.MockTransport(fail)).check_access()


def test_body_json_cannot_carry_is_an_api_error() -> None:
    api = N8nApi(BASE, "k", transport=httpx.MockTransport(never_called))
    with pytest.raises(ApiError, match=f"^cannot send POST {BASE}/api/v1/workflows: "):
        api.create_workflow({"settings": {"x": float("nan")}})


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("http://127.0.0.1:5678", True),
        ("http://127.8.0.1:5678", True),
        ("http://[::1]:5678", True),
        ("http://[::ffff:127.0.0.1]:5678", True),
        ("http://[::ffff:192.0.2.7]:5678", False),
        ("http://localhost:5678", True),
        ("https://n8n.example.com", False),
        ("http://192.0.2.7:5678", False),
        ("http://localhost.example.com", False),
    ],
)
def test_answers_travel_uncompressed_only_on_loopback(url: str, plain: bool) -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["Accept-Encoding"])
        return httpx.Response(200, json={"data": [], "nextCursor": None})

    with N8nApi(url, "k", transport=httpx.MockTransport(answer)) as api:
        list(api.iter_workflows())
    assert (sent == ["identity"]) is plain
    assert (transfer_headers(url) == {"Accept-Encoding": "identity"}) is plain
