"""Sans-IO tests of the SCAN command through CommandExecutor: option parsing and its errors,
the reply shape, paging, and visibility across sessions (SPEC §3)."""

from __future__ import annotations

import pytest
from test_commands import Client, err, ok

from kvloop.commands import SCAN_MAX_LIMIT, SCAN_PAGE_CHARS, CommandExecutor
from kvloop.config import Settings


@pytest.fixture
def executor() -> CommandExecutor:
    """An executor holding keys k00..k24, a0 and b0."""
    executor = CommandExecutor(Settings())
    c = Client(executor)
    for i in range(25):
        c(f"PUT k{i:02d} v{i}")
    c("PUT a0 A")
    c("PUT b0 B")
    return executor


@pytest.fixture
def c(executor) -> Client:
    """A session on the executor."""
    return Client(executor)


def keys(n: int, start: int = 0) -> list[str]:
    """k<start>..k<start+n-1>."""
    return [f"k{i:02d}" for i in range(start, start + n)]


def test_defaults_and_shape(c):
    reply = c("SCAN")
    assert reply == ok({"keys": ["a0", "b0", *keys(25)], "more": False})
    assert c("SCAN PREFIX k LIMIT 3") == ok({"keys": keys(3), "more": True})
    assert c("SCAN PREFIX k LIMIT 3 VALUES") == ok(
        {"keys": keys(3), "more": True, "values": ["v0", "v1", "v2"]})
    assert c("SCAN PREFIX k AFTER k22") == ok({"keys": ["k23", "k24"], "more": False})
    assert c("SCAN PREFIX zz") == ok({"keys": [], "more": False})


def test_options_in_any_order_and_any_case(c):
    expected = c("SCAN PREFIX k AFTER k05 LIMIT 4 VALUES")
    assert expected["result"]["keys"] == keys(4, 6)
    for line in ["SCAN values limit 4 after k05 prefix k",
                 "scan Limit 4\tPrefix k  aFtEr k05 Values ",
                 "SCAN AFTER k05 VALUES PREFIX k LIMIT 4"]:
        assert c(line) == expected


def test_default_limit_is_100(executor, c):
    for i in range(150):
        c(f"PUT m{i:03d} x")
    reply = c("SCAN PREFIX m")
    assert len(reply["result"]["keys"]) == 100 and reply["result"]["more"] is True


def test_paging_with_after(c):
    seen: list[str] = []
    after = ""
    while True:
        result = c(f"SCAN PREFIX k LIMIT 7{after}")["result"]
        seen += result["keys"]
        if not result["more"]:
            break
        after = f" AFTER {result['keys'][-1]}"
    assert seen == keys(25)


def test_limit_bounds(c):
    assert c(f"SCAN LIMIT {SCAN_MAX_LIMIT}")["status"] == "Ok"
    err(c(f"SCAN LIMIT {SCAN_MAX_LIMIT + 1}"), "BAD_REQUEST", str(SCAN_MAX_LIMIT), "LIMIT")
    err(c("SCAN LIMIT 99999999999999999999999"), "BAD_REQUEST", str(SCAN_MAX_LIMIT))
    for bad in ["0", "-1", "ten", "1.5", "\u0661"]:  # U+0661 is an Arabic-Indic digit
        err(c(f"SCAN LIMIT {bad}"), "BAD_REQUEST", "LIMIT", "usage: SCAN")


@pytest.mark.parametrize("line, words", [
    ("SCAN FROM k", ["unknown SCAN option", "'FROM'", "usage: SCAN"]),
    ("SCAN k", ["unknown SCAN option", "'k'"]),
    ("SCAN PREFIX a PREFIX b", ["PREFIX given twice", "usage: SCAN"]),
    ("SCAN VALUES values", ["VALUES given twice"]),
    ("SCAN limit 1 LIMIT 2", ["LIMIT given twice"]),
    ("SCAN PREFIX", ["PREFIX needs a value", "usage: SCAN"]),
    ("SCAN LIMIT 5 AFTER", ["AFTER needs a value"]),
    ("SCAN \u017fCAN", ["unknown SCAN option"]),  # long s: no Unicode upper-casing
    ("SCAN VALUE", ["unknown SCAN option"]),
])
def test_bad_options(c, line, words):
    err(c(line), "BAD_REQUEST", *words)


def test_prefix_and_after_are_checked_like_keys(c):
    err(c("SCAN PREFIX a\x01b"), "BAD_REQUEST", "control character")
    err(c("SCAN AFTER " + "x" * 2000), "TOO_LARGE", "--max-key-bytes")


def test_page_is_cut_by_bytes_with_more(executor, c):
    big = "x" * (100 * 1024)
    for i in range(6):
        c(f"PUT big{i} {big}")
    result = c("SCAN PREFIX big VALUES")["result"]
    assert result["more"] is True
    assert 1 <= len(result["keys"]) < 6
    assert sum(map(len, result["values"])) >= SCAN_PAGE_CHARS - len(big)
    rest = c(f"SCAN PREFIX big AFTER {result['keys'][-1]} VALUES")["result"]
    assert result["keys"] + rest["keys"] == [f"big{i}" for i in range(6)]
    assert rest["more"] is False


def test_visibility_across_sessions(executor, c):
    writer = Client(executor)
    writer("START")
    writer("PUT k001 new")  # uncommitted creation
    writer("DEL k01")  # uncommitted deletion
    writer("PUT k02 changed")
    assert c("SCAN PREFIX k0 LIMIT 3 VALUES")["result"] == {
        "keys": ["k00", "k01", "k02"], "more": True, "values": ["v0", "v1", "v2"]}
    assert writer("SCAN PREFIX k0 LIMIT 3 VALUES")["result"] == {
        "keys": ["k00", "k001", "k02"], "more": True, "values": ["v0", "new", "changed"]}
    c("START")
    assert c("SCAN PREFIX k0 LIMIT 3")["result"]["keys"] == ["k00", "k01", "k02"]
    assert writer("COMMIT")["status"] == "Ok"
    assert c("SCAN PREFIX k0 LIMIT 3")["result"]["keys"] == ["k00", "k001", "k02"]


def test_scan_counts_in_stats_and_needs_auth():
    executor = CommandExecutor(Settings(password="secret"))
    c = Client(executor)
    err(c("SCAN"), "AUTH_REQUIRED")
    c("AUTH secret")
    c("SCAN")
    assert c("STATS")["result"]["commands"]["SCAN"] == 1
