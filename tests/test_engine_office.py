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


def test_single_requests_and_the_batch_give_the_same_top_10_for_500_office_shoppers(engine, office):
    """One code path: 500 shoppers (0-3 known items, some with a stated category) ranked one at a time (the
    serving path, FAISS behind the text source) and as one batch (`score`, evaluation's path) list the same
    top 10 in the same order."""
    import numpy as np

    from coldrec.data import UserContext
    from coldrec.retrieve.ranking import top_n

    model = engine.model
    rng = np.random.default_rng(0)
    leaves = sorted({leaf for leaf in model.catalog.leaf_categories() if leaf})
    contexts = []
    for row in range(500):
        items = rng.choice(len(model.catalog), size=row % 4, replace=False)
        contexts.append(UserContext(items=items, interests=[str(rng.choice(leaves))] if row % 5 == 0 else []))
    batch = top_n(model.score(contexts), 10)[0]
    single = np.array([model.rank(context, 10).items for context in contexts])
    assert (single == batch).all(axis=1).sum() == 500
