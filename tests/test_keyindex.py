"""Tests of the sorted key index (kvloop/keyindex.py): edge cases, then randomized runs
checked step by step against a plain ``set`` and ``sorted()``."""

from __future__ import annotations

import random

import pytest

from kvloop.keyindex import CHUNK, SortedKeys, check_invariants, prefix_end


def test_empty():
    keys = SortedKeys()
    assert len(keys) == 0
    assert "a" not in keys
    assert list(keys) == []
    assert list(keys.iter_from("")) == []
    keys.discard("a")  # missing: nothing happens
    check_invariants(keys)


def test_add_is_idempotent_and_discard_removes():
    keys = SortedKeys()
    for key in ["b", "a", "c", "a", "b"]:
        keys.add(key)
    assert list(keys) == ["a", "b", "c"]
    assert len(keys) == 3
    keys.discard("b")
    keys.discard("b")
    assert list(keys) == ["a", "c"]
    assert "b" not in keys and "a" in keys and "c" in keys
    keys.discard("a")
    keys.discard("c")
    assert len(keys) == 0 and list(keys) == []
    keys.add("z")
    assert list(keys) == ["z"]
    check_invariants(keys)


def test_iter_from_inclusive_and_exclusive():
    keys = SortedKeys(["a", "ab", "abc", "b", "ba"])
    assert list(keys.iter_from("ab")) == ["ab", "abc", "b", "ba"]
    assert list(keys.iter_from("ab", inclusive=False)) == ["abc", "b", "ba"]
    assert list(keys.iter_from("aa")) == ["ab", "abc", "b", "ba"]
    assert list(keys.iter_from("aa", inclusive=False)) == ["ab", "abc", "b", "ba"]
    assert list(keys.iter_from("")) == ["a", "ab", "abc", "b", "ba"]
    assert list(keys.iter_from("ba", inclusive=False)) == []
    assert list(keys.iter_from("c")) == []


def test_iter_from_with_a_stop():
    keys = SortedKeys(["a", "ab", "abc", "b", "ba"])
    assert list(keys.iter_from("a", stop="b")) == ["a", "ab", "abc"]
    assert list(keys.iter_from("a", False, stop="abc")) == ["ab"]
    assert list(keys.iter_from("b", stop="b")) == []
    assert list(keys.iter_from("c", stop="a")) == []
    assert list(keys.iter_from("", stop="zz")) == ["a", "ab", "abc", "b", "ba"]


def test_prefix_end():
    assert prefix_end("") is None
    assert prefix_end("ab") == "ac"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff\U0010ffff") is None
    words = ["a", "a\U0010ffff", "a\U0010ffffz", "az", "b", "\U0010ffff"]
    for prefix in ["a", "a\U0010ffff", "\U0010ffff", "az"]:
        end = prefix_end(prefix)
        assert [w for w in words if w >= prefix and (end is None or w < end)] == [
            w for w in words if w.startswith(prefix)]


def test_code_point_order_is_utf8_byte_order():
    words = ["z", "é", "\u00ff", "\u0100", "\uffff", "\U0001f600", "A", "~", "\u4e2d"]
    keys = SortedKeys(words)
    assert list(keys) == sorted(words, key=lambda w: w.encode("utf-8"))


def test_constructor_builds_valid_chunks():
    for count in (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, CHUNK + CHUNK // 2 - 1, 5 * CHUNK + 3):
        words = [f"k{i:07d}" for i in range(count)]
        keys = SortedKeys(reversed(words))
        check_invariants(keys)
        assert list(keys) == words


def test_chunks_split_and_merge_through_many_changes():
    keys = SortedKeys()
    words = [f"k{i:07d}" for i in range(6 * CHUNK)]
    for word in words:  # ascending: always appended to the last chunk
        keys.add(word)
    check_invariants(keys)
    for word in reversed(words):  # descending removal: merges from the end
        if int(word[1:]) % 3:
            keys.discard(word)
    check_invariants(keys)
    assert list(keys) == [w for w in words if int(w[1:]) % 3 == 0]


@pytest.mark.parametrize("seed", range(6))
def test_randomized_against_sorted(seed):
    rng = random.Random(seed)
    alphabet = "ab\u00e9z\U0001f600"
    keys = SortedKeys()
    model: set[str] = set()
    # A key space small enough that adds and discards hit existing keys often.
    for step in range(12_000):
        word = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.6:
            keys.add(word)
            model.add(word)
        else:
            keys.discard(word)
            model.discard(word)
        probe = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
        assert (probe in keys) == (probe in model)
        if step % 500 == 0:
            check_invariants(keys)
            ordered = sorted(model)
            assert list(keys) == ordered
            assert list(keys.iter_from(probe)) == [k for k in ordered if k >= probe]
            assert list(keys.iter_from(probe, inclusive=False)) == [k for k in ordered if k > probe]
            stop = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
            assert list(keys.iter_from(probe, stop=stop)) == [
                k for k in ordered if probe <= k < stop]
            assert list(keys.iter_from(probe, False, prefix_end(probe))) == [
                k for k in ordered if k > probe and k.startswith(probe)]
        assert len(keys) == len(model)
    check_invariants(keys)
    assert list(keys) == sorted(model)


def test_randomized_large_with_small_chunks_crossing():
    # Enough keys for many chunks, inserted and removed in random order.
    rng = random.Random(99)
    words = [f"{rng.randrange(10**9):09d}" for _ in range(8 * CHUNK)]
    keys = SortedKeys()
    model: set[str] = set()
    for word in words:
        keys.add(word)
        model.add(word)
    check_invariants(keys)
    rng.shuffle(words)
    for word in words[: len(words) * 9 // 10]:
        keys.discard(word)
        model.discard(word)
    check_invariants(keys)
    ordered = sorted(model)
    assert list(keys) == ordered
    for _ in range(200):
        probe = f"{rng.randrange(10**9):09d}"
        got = list(keys.iter_from(probe, inclusive=False))
        assert got == [k for k in ordered if k > probe]
        stop = f"{rng.randrange(10**9):09d}"
        got = list(keys.iter_from(probe, stop=stop))
        assert got == [k for k in ordered if probe <= k < stop]
        prefix = probe[:rng.randint(1, 5)]
        got = list(keys.iter_from(prefix, stop=prefix_end(prefix)))
        assert got == [k for k in ordered if k.startswith(prefix)]
