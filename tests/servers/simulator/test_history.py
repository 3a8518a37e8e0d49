"""History paging and overwrite rules (PROTOCOL.md §2 /history)."""

from __future__ import annotations

from servers.simulator.history import History


def _record(history: History, prompt_id: str, number: int = 0, **extra: str) -> None:
    history.record(
        [number, prompt_id, {}, {"client_id": "c", **extra}, ["1"]],
        outputs={},
        meta={},
        status_str="success",
        completed=True,
        messages=[],
    )


def _filled(*ids: str) -> History:
    history = History()
    for prompt_id in ids:
        _record(history, prompt_id)
    return history


def test_max_items_gives_the_newest_still_oldest_first() -> None:
    assert list(_filled("a", "b", "c", "d").listing(max_items=2)) == ["c", "d"]


def test_offset_skips_the_oldest() -> None:
    history = _filled("a", "b", "c", "d")
    assert list(history.listing(offset=1)) == ["b", "c", "d"]
    assert list(history.listing(max_items=2, offset=1)) == ["b", "c"]


def test_rerun_of_a_prompt_id_overwrites_in_place() -> None:
    history = _filled("a", "b")
    _record(history, "a", number=7)
    assert list(history.listing()) == ["a", "b"]
    assert history.get("a")["a"]["prompt"][0] == 7


def test_unknown_id_is_an_empty_object_and_delete_and_clear_remove() -> None:
    history = _filled("a", "b")
    assert history.get("zzz") == {}
    history.delete("a")
    history.delete("not-there")
    assert list(history.listing()) == ["b"]
    history.clear()
    assert history.listing() == {}


def test_comfy_org_credentials_are_not_stored() -> None:
    history = History()
    _record(history, "a", auth_token_comfy_org="secret", api_key_comfy_org="secret")
    assert history.get("a")["a"]["prompt"][3] == {"client_id": "c"}
