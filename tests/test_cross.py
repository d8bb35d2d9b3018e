"""The cross-encoder re-ranker: it learns judged pairs, saves and loads, refuses bad input, and re-orders only
the head of a first-stage list."""

from __future__ import annotations

import numpy as np
import pytest

from coldrec.adapt.cross import CrossEncoderConfig, CrossEncoderScorer
from tests.test_search_eval import HashEncoder

COLOURS = ("red", "blue", "green", "white")
THINGS = ("drill", "hose", "fan", "paint", "lamp", "saw")
TITLES = [f"{c} {t} model {i}" for i, (c, t) in enumerate((c, t) for c in COLOURS for t in THINGS)]


QUERIES = ("red drill", "blue hose", "green fan", "white paint")


def judged_pairs():
    """Each query against every title sharing a word with it: 3 when both words match, 1 otherwise."""
    queries, texts, relevance = [], [], []
    for query in QUERIES:
        colour, thing = query.split()
        for title in TITLES:
            if colour in title or thing in title:
                queries.append(query)
                texts.append(title)
                relevance.append(3.0 if colour in title and thing in title else 1.0)
    return queries, texts, np.array(relevance)


@pytest.fixture(scope="module")
def scorer():
    queries, texts, relevance = judged_pairs()
    config = CrossEncoderConfig(epochs=12, batch_size=12, learning_rate=2e-4, device="cpu")
    return CrossEncoderScorer(config=config).fit(queries, texts, relevance)


def test_the_cross_encoder_learns_which_judged_pairs_are_relevant(scorer):
    queries, texts, relevance = judged_pairs()
    scores = scorer.predict(queries, texts)
    assert scorer.training_["pairs"] == len(queries) and scorer.training_["device"] == "cpu"
    assert scores[relevance == 3].mean() > scores[relevance == 1].mean() + 1.0
    # for each query the exact match is ranked first among its judged titles
    firsts = [texts[np.flatnonzero(np.array(queries) == q)[np.argmax(scores[np.array(queries) == q])]]
              for q in sorted(set(queries))]
    assert all(all(word in title for word in q.split()) for q, title in zip(sorted(set(queries)), firsts))


def test_a_saved_cross_encoder_scores_the_same_after_loading(scorer, tmp_path):
    queries, texts, _ = judged_pairs()
    loaded = CrossEncoderScorer.load(scorer.save(tmp_path / "cross"), device="cpu")
    np.testing.assert_allclose(loaded.predict(queries[:20], texts[:20]), scorer.predict(queries[:20], texts[:20]),
                               rtol=1e-5, atol=1e-5)
    assert loaded.training_["pairs"] == len(queries)


def test_the_cross_encoder_refuses_bad_input(scorer):
    with pytest.raises(ValueError, match="pair 1 .'blue hose'.: relevance"):
        CrossEncoderScorer().fit(["red drill", "blue hose"], ["a", "b"], [3.0, float("nan")])
    with pytest.raises(ValueError, match="differ in length"):
        CrossEncoderScorer().fit(["red drill"], ["a", "b"], [3.0, 1.0])
    with pytest.raises(RuntimeError, match="not fitted"):
        CrossEncoderScorer().predict(["red drill"], ["a"])
    with pytest.raises(ValueError, match="2 queries but 1 texts"):
        scorer.predict(["red drill", "blue hose"], ["a"])


def test_the_cross_model_reorders_only_the_head_of_the_first_stage(scorer):
    from coldrec.data import ItemCatalog
    from coldrec.evaluate.search import CrossModel, WeightedModel

    catalog = ItemCatalog.from_records([str(i) for i in range(len(TITLES))], TITLES)
    model = CrossModel(encoder=HashEncoder(), rerank_depth=5).fit(catalog)
    model.searcher.reranker = scorer
    first_stage = WeightedModel(encoder=HashEncoder()).fit(catalog)
    queries = ["red drill", "green lamp", "white saw"]
    ranked, _ = model.retrieve(queries, 12)
    base, _ = first_stage.retrieve(queries, 12)
    np.testing.assert_array_equal(ranked[:, 5:], base[:, 5:])
    for row, query in enumerate(queries):
        assert sorted(ranked[row, :5]) == sorted(base[row, :5])
        head_scores = scorer.predict([query] * 5, [TITLES[i] for i in ranked[row, :5]])
        assert np.all(np.diff(head_scores) <= 1e-6)
    rerank = model.score_candidates(queries[:2], [np.arange(6), np.arange(3)])
    assert [len(s) for s in rerank] == [6, 3]
    np.testing.assert_allclose(rerank[1], scorer.predict(["green lamp"] * 3, TITLES[:3]), rtol=1e-5)  # float32, batch-size dependent
