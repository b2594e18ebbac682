"""The LLM calls explorer: every filter narrows to exactly the matching calls, every sort pages by
keyset without skipping or repeating a call, URL parameters round-trip and bad ones name
themselves; the page reads its filters from the URL and links each call to its conversation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from observability import auth
from observability import events as ev
from observability.analytics import calls_explorer as ce
from observability.settings import Settings, reset_settings_cache
from observability.store import Store
from observability.store.ingest import write_batch
from observability.timeutil import from_epoch, utcnow
from observability.ui import common, nav

ROOT = Path(__file__).resolve().parent.parent
S = Settings().replace(redis_url=None)
BOTS, MODELS = ("lead_bot", "buyer_bot", "seller_bot"), ("claude-sonnet-4", "gpt-4o", "claude-haiku-4")


def _calls(n: int = 90, start: float | None = None) -> list[dict]:
    t0 = start or time.time() - 3000
    out = []
    for i in range(n):
        ok = i % 7 != 0
        out.append(dict(
            trace_id=f"t{i:03d}", ts=t0 + i * 30 + (i % 3), bot=BOTS[i % 3], agent=f"agent{i % 4}",
            decision_type="reply", model=MODELS[i % 3], provider="anthropic" if i % 3 != 1 else "openai",
            input_tokens=100 + i, output_tokens=10 + i, cache_read_tokens=0, cache_write_tokens=0,
            latency_ms=float(100 + (i * 37) % 900), cache_hit=False, cost_usd=round(0.001 * ((i * 13) % 50), 6),
            conversation_id=f"c{i % 5}", success=ok, error_type=None if ok else ("timeout" if i % 2 else "rate_limit"),
        ))  # fmt: skip
    return out


def _write(store: Store, calls: list[dict]) -> None:
    write_batch(store, [ev.llm_call(**c) for c in calls], S)


def _all(store: Store, f: ce.CallFilters, limit: int = 7) -> list[str]:
    seen, cursor = [], None
    while True:
        page = ce.explore_calls(store, f, cursor=cursor, limit=limit)
        seen += [r["trace_id"] for r in page.rows]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


CASES = [
    ({"bot": "lead_bot"}, lambda c: c["bot"] == "lead_bot"),
    ({"model": ["gpt-4o", "claude-haiku-4"]}, lambda c: c["model"] in ("gpt-4o", "claude-haiku-4")),
    ({"provider": "openai"}, lambda c: c["provider"] == "openai"),
    ({"agent": "agent2"}, lambda c: c["agent"] == "agent2"),
    ({"status": "error"}, lambda c: not c["success"]),
    ({"status": "ok"}, lambda c: c["success"]),
    ({"error": "timeout"}, lambda c: c["error_type"] == "timeout"),
    ({"lat_min": "300", "lat_max": "600"}, lambda c: 300 <= c["latency_ms"] <= 600),
    ({"cost_min": "0.02", "cost_max": "0.03"}, lambda c: 0.02 <= c["cost_usd"] <= 0.03),
    ({"conversation": "c3"}, lambda c: c["conversation_id"] == "c3"),
    ({"bot": "buyer_bot", "status": "error", "lat_min": "200"},
     lambda c: c["bot"] == "buyer_bot" and not c["success"] and c["latency_ms"] >= 200),
]  # fmt: skip


@pytest.mark.parametrize("params, keep", CASES)
def test_each_filter_gives_exactly_the_matching_calls(store: Store, params: dict, keep) -> None:  # noqa: ANN001
    calls = _calls()
    _write(store, calls)
    got = _all(store, ce.CallFilters.from_params(params))
    want = [
        c["trace_id"] for c in sorted(calls, key=lambda c: (c["ts"], c["trace_id"]), reverse=True) if keep(c)
    ]
    assert want and got == want


@pytest.mark.parametrize("sort", ce.SORTS)
def test_every_sort_pages_without_skipping_or_repeating(store: Store, sort: str) -> None:
    calls = _calls()
    _write(store, calls)
    got = _all(store, ce.CallFilters.from_params({"sort": sort}), limit=8)
    assert sorted(got) == sorted(c["trace_id"] for c in calls) and len(got) == len(set(got))
    by = {c["trace_id"]: c for c in calls}
    key = {"newest": lambda t: -by[t]["ts"], "oldest": lambda t: by[t]["ts"],
           "slowest": lambda t: -by[t]["latency_ms"], "costliest": lambda t: -by[t]["cost_usd"]}[sort]  # fmt: skip
    assert [key(t) for t in got] == sorted(key(t) for t in got)


def test_time_range_and_from_to(store: Store) -> None:
    now = time.time()
    calls = _calls(40, start=now - 8 * 3600)  # one every 30 s for 20 minutes, 8 hours ago
    recent = _calls(5, start=now - 600)
    for c in recent:
        c["trace_id"] = "r" + c["trace_id"]
    _write(store, calls + recent)
    assert sorted(_all(store, ce.CallFilters.from_params({"range": "1h"}))) == sorted(
        c["trace_id"] for c in recent
    )
    assert len(_all(store, ce.CallFilters.from_params({"range": "24h"}))) == 45
    start = from_epoch(calls[10]["ts"]).replace(tzinfo=None)
    end = from_epoch(calls[20]["ts"]).replace(tzinfo=None)
    link = ce.call_link_params(since=start, until=end + timedelta(microseconds=1), sort="oldest")
    got = _all(store, ce.CallFilters.from_params(link))
    assert got[0] == calls[10]["trace_id"] and len(got) >= 10


def test_bad_parameters_name_themselves() -> None:
    with pytest.raises(ce.FilterError) as err:
        ce.CallFilters.from_params({"lat_min": "fast", "cost_max": "-1", "status": "meh", "sort": "random",
                                    "range": "2y", "from": "yesterday"})  # fmt: skip
    assert set(err.value.errors) == {"lat_min", "cost_max", "status", "sort", "range", "from"}
    assert "must be a number" in err.value.errors["lat_min"] and "ok or error" in err.value.errors["status"]
    with pytest.raises(ce.FilterError, match="below the lowest"):
        ce.CallFilters.from_params({"lat_min": "500", "lat_max": "100"})


def test_link_params_round_trip() -> None:
    f = ce.CallFilters.from_params(ce.call_link_params(bots=["lead_bot"], status="error", sort="slowest",
                                                       min_cost_usd=0.5, conversation_id="c9"))  # fmt: skip
    assert (f.bots, f.status, f.sort, f.min_cost_usd, f.conversation_id) == (
        ("lead_bot",),
        "error",
        "slowest",
        0.5,
        "c9",
    )


def test_every_role_that_sees_analytics_has_the_page() -> None:
    for role in auth.ROLES:
        assert ("pages/llm_calls.py" in [p.path for p in nav.pages_for_role(role)]) == auth.role_can(
            role, "dashboards.view"
        )


# ---- the page -------------------------------------------------------------------------------------


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'console.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("AUTH_MODE", "password")
    monkeypatch.delenv("REDIS_URL", raising=False)
    reset_settings_cache()
    common.clear_caches()
    store = Store.from_url(url)
    store.migrate()
    auth.create_user(store, "analyst", auth.ANALYST, "a-long-password")
    _write(store, _calls())
    yield store
    store.dispose()
    reset_settings_cache()
    common.clear_caches()


def _page(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "llm_calls.py"), default_timeout=60)
    at.session_state["user"] = auth.User("analyst", auth.ANALYST)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_page_reads_its_filters_from_the_url_and_links_calls_to_conversations(console: Store) -> None:
    at = _page({"bot": "lead_bot", "status": "error", "sort": "slowest"})
    [table] = [d.value for d in at.dataframe]
    assert set(table["bot"]) == {"lead_bot"} and not table["success"].any()
    assert list(table["latency_ms"]) == sorted(table["latency_ms"], reverse=True)
    assert all(link.startswith("./conversations?conversation=c") for link in table["conversation"])
    assert at.multiselect(key="bot").value == ["lead_bot"]


def test_a_cached_response_says_so_beside_its_zero_cost(console: Store) -> None:
    """A response-cache hit costs nothing: the row says it was cached, so $0 does not read as unpriced."""
    _write(
        console, [dict(_calls(1)[0], trace_id="cached-1", ts=time.time() - 5, cache_hit=True, cost_usd=0.0)]
    )
    [table] = [d.value for d in _page().dataframe]
    cached = table[table["cache_hit"]]
    assert list(cached["trace_id"]) == ["cached-1"] and list(cached["cost_usd"]) == [0.0]


def test_the_page_pages_through_every_call(console: Store) -> None:
    at = _page()
    seen = list(at.dataframe[0].value["trace_id"])
    next(b for b in at.button if b.key == "lc_next").click().run()
    seen += list(at.dataframe[0].value["trace_id"])
    assert len(seen) == 90 == len(set(seen))
    assert next(b for b in at.button if b.key == "lc_next").disabled


def test_empty_cells_are_empty_and_a_from_time_says_it_bounds_the_list(console: Store) -> None:
    at = _page({"status": "ok"})
    [table] = [d.value for d in at.dataframe]
    assert set(table["error_type"]) == {""} and set(table["error_raw"]) == {""}  # not "None"
    assert not any("not the range" in c.value for c in at.caption)
    # the format, not a time: an hour ago beside the 24 h range read as where the list starts
    assert at.text_input(key="from").placeholder == "YYYY-MM-DDTHH:MM"
    at = _page({"status": "ok", "from": f"{utcnow() - timedelta(hours=2):%Y-%m-%dT%H:%M}"})
    assert any("From / To are set: they, not the range, bound the list." in c.value for c in at.caption)


def test_a_bad_filter_says_which_and_keeps_the_rest(console: Store) -> None:
    at = _page({"bot": "lead_bot", "lat_min": "fast"})
    assert any("the lowest latency must be a number" in e.value for e in at.error)
    assert at.text_input(key="lat_min").value == "fast" and at.multiselect(key="bot").value == ["lead_bot"]
    assert not at.dataframe


def _next(at: AppTest) -> AppTest:
    next(b for b in at.button if b.key == "lc_next").click().run()
    assert not at.exception, at.exception
    return at


def test_the_page_of_calls_is_in_the_url_so_a_shared_link_shows_the_same_rows(console: Store) -> None:
    at = _next(_page({"sort": "slowest"}))
    second = list(at.dataframe[0].value["trace_id"])
    link = {k: at.query_params[k] for k in ("sort", "after", "page")}
    assert link["page"] in ("2", ["2"]) and link["after"]
    shared = _page(link)  # the receiver: a new session opening the sender's URL
    assert list(shared.dataframe[0].value["trace_id"]) == second
    assert any("Calls 51–90" in c.value for c in shared.caption)
    next(b for b in shared.button if b.key == "lc_first").click().run()
    assert "after" not in shared.query_params and "page" not in shared.query_params
    assert any("Calls 1–50" in c.value for c in shared.caption)


def test_previous_page_goes_back_through_the_pages_this_session_saw(console: Store) -> None:
    """Keyset pages know only where the next one starts: Previous goes back through the pages shown,
    and a page opened from a link offers it only once the first page has been opened."""
    at = _page({"sort": "slowest"})
    first = list(at.dataframe[0].value["trace_id"])
    assert next(b for b in at.button if b.key == "lc_prev").disabled  # page 1
    _next(at)
    link = {k: at.query_params[k] for k in ("sort", "after", "page")}
    next(b for b in at.button if b.key == "lc_prev").click().run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["trace_id"]) == first
    assert "after" not in at.query_params and any("Calls 1–50" in c.value for c in at.caption)
    shared = _page(link)  # page 2 from a link: the page before it is the first
    next(b for b in shared.button if b.key == "lc_prev").click().run()
    assert list(shared.dataframe[0].value["trace_id"]) == first
    later = _page({**link, "page": "3"})  # a later page from a link: this session saw none before it
    previous = next(b for b in later.button if b.key == "lc_prev")
    assert previous.disabled and "first page" in previous.help


def test_new_filters_go_back_to_the_first_page_of_calls(console: Store) -> None:
    at = _next(_page())
    at.text_input(key="lat_min").set_value("0").run()  # every call still matches: the list starts over
    assert not at.exception and "after" not in at.query_params
    assert any("Calls 1–50" in c.value for c in at.caption)


def test_a_page_link_from_another_sort_shows_the_first_page_and_says_so(console: Store) -> None:
    at = _next(_page())  # a newest-first cursor...
    at = _page({"sort": "slowest", "after": at.query_params["after"], "page": "2"})  # ...under another sort
    assert any("no longer valid" in w.value for w in at.warning)
    assert any("Calls 1–50" in c.value for c in at.caption) and "after" not in at.query_params
