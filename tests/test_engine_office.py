"""The engine on amazon14-office with the packaged MiniLM encoder (slow: a fit of a minute or two)."""

from __future__ import annotations

import pytest

from coldrec.serve.engine import Engine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(office):
    return Engine.build(office.catalog, office.log)


def ids(results) -> list[str]:
    return [r.item_id for r in results]


def test_search_admits_it_found_nothing_on_office(engine):
    """Chinese for stapler, Japanese for stapler and gibberish find nothing on the English catalog; a misspelt
    stapler still finds staples and staplers; a blank query is an error."""
    assert 0.3 < engine.search_floor < 0.6
    for query in ("订书机", "ホッチキス", "xqzvbn"):
        assert engine.search(query, 10) == [], query
    typo = engine.search("staplr", 10)
    assert typo and all("stapl" in r.title.lower() for r in typo[:5])
    assert {r.reason for r in engine.search("stapler", 10)} == {"matches your search"}
    with pytest.raises(ValueError):
        engine.search("  ", 10)


def test_identical_office_products_are_listed_once(engine):
    """Items 19 and 20 share their title: a list never holds both."""
    assert engine.catalog.frame["title"][18] == engine.catalog.frame["title"][19]
    for results in (engine.similar("21", 20), engine.search("sharpie accent yellow highlighters", 20)):
        assert not {"19", "20"} <= set(ids(results))
        assert len({r.title.lower() for r in results}) == len(results)
