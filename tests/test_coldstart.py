"""The cold-start recommender on a generated shop where the answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from coldrec.data import InteractionLog, ItemCatalog, UserContext
from coldrec.profile.interests import build_interest_profiles, cluster_interests
from coldrec.recommend.coldstart import FEATURES, ColdStartRecommender
from coldrec.retrieve.ranking import top_n
from tests.synthetic import FakeEncoder

DAY = 86_400
CATEGORIES = {
    "Staplers": ["stapler", "staples", "desk", "heavy", "duty"],
    "Printer Ink": ["ink", "cartridge", "printer", "black", "color"],
    "Desk Chairs": ["chair", "ergonomic", "seat", "mesh", "office"],
}
PER_CATEGORY = 20


def make_shop(n_users: int = 500, seed: int = 0):
    """Items in three categories; each shopper sticks to one or two categories; times interleave."""
    rng = np.random.default_rng(seed)
    titles, categories = [], []
    for category, words in CATEGORIES.items():
        for j in range(PER_CATEGORY):
            picked = rng.choice(words, size=3, replace=False)
            titles.append(" ".join(picked) + f" model {category[:3].lower()}{j}")
            categories.append(category)
    n_items = len(titles)
    catalog = ItemCatalog.from_records([str(i) for i in range(n_items)], titles, category=categories)
    users, items, times = [], [], []
    for u in range(n_users):
        start = rng.uniform(0, 600) * DAY
        favourites = rng.choice(len(CATEGORIES), size=1 + (u % 4 == 0), replace=False)
        for step in range(rng.integers(5, 10)):
            category = favourites[step % len(favourites)]
            # within a category, lower-numbered items are more popular
            item = category * PER_CATEGORY + min(int(rng.exponential(5)), PER_CATEGORY - 1)
            users.append(f"u{u}")
            items.append(item)
            times.append(int(start + step * rng.uniform(1, 20) * DAY))
    order = np.argsort(times, kind="stable")
    log = InteractionLog.from_arrays(np.array(users)[order], np.array(items)[order], np.array(times)[order])
    return catalog, log


def category_of(item: int) -> int:
    return int(item) // PER_CATEGORY


@pytest.fixture(scope="module")
def shop():
    return make_shop()


@pytest.fixture(scope="module")
def model(shop):
    catalog, log = shop
    return ColdStartRecommender(encoder=FakeEncoder(), max_training_users=400).fit(log, catalog)


def test_scores_cover_the_catalog_and_candidates_are_finite(model, shop):
    catalog, _ = shop
    scores = model.score([UserContext(items=[3]), UserContext()])
    assert scores.shape == (2, len(catalog)) and scores.dtype == np.float32
    assert (scores > -1e8).sum(axis=1).min() >= 10  # enough candidates for a top-10


def test_one_known_item_brings_its_category(model):
    for category in range(3):
        first = category * PER_CATEGORY + 2
        items, _ = top_n(model.score([UserContext(items=[first], times=[10**9])]), 10, exclude=[np.array([first])])
        share = np.mean([category_of(i) == category for i in items[0]])
        assert share >= 0.6, (category, items)  # a third of the catalog: chance is 0.33


def test_stated_interest_alone_brings_its_category(model):
    for code, name in enumerate(CATEGORIES):
        items, _ = top_n(model.score([UserContext(interests=[name])]), 10)
        assert np.mean([category_of(i) == code for i in items[0]]) >= 0.8, name


def test_two_interests_stay_apart(model):
    staplers, chairs = [0, 1, 3, 0], [2 * PER_CATEGORY, 2 * PER_CATEGORY + 1]
    context = UserContext(items=staplers + chairs)
    items, _ = top_n(model.score([context]), 10, exclude=[np.array(staplers + chairs)])
    categories = {category_of(i) for i in items[0]}
    assert {0, 2} <= categories and 1 not in categories


def test_a_new_event_changes_recommendations_without_refit(model):
    before, _ = top_n(model.score([UserContext(items=[1])]), 10)
    after, _ = top_n(model.score([UserContext(items=[1, 41, 42, 43])]), 10)
    assert np.mean([category_of(i) == 2 for i in after[0]]) > np.mean([category_of(i) == 2 for i in before[0]])


def test_new_items_are_recommendable_from_text(shop):
    catalog, log = shop
    # append a never-bought ink cartridge to the catalog: it must be a candidate for ink buyers
    frame = catalog.frame.copy()
    frame.loc[len(frame)] = {**frame.iloc[PER_CATEGORY].to_dict(), "item_id": "new-ink", "title": "ink cartridge printer black new"}
    bigger = ItemCatalog(frame)
    model = ColdStartRecommender(encoder=FakeEncoder(), max_training_users=300).fit(log, bigger)
    new = len(bigger) - 1
    scores = model.score([UserContext(items=[PER_CATEGORY, PER_CATEGORY + 1]), UserContext(items=[0, 1])])
    assert scores[0, new] > -1e8  # a candidate for the ink buyer
    assert scores[0, new] > scores[1, new]


def test_new_arrivals_source_reaches_never_bought_items_crowded_out_elsewhere(shop):
    """With room for only 2 items per source, established ink items fill the text sources' slots: the
    new-arrivals source (never-bought items closest by text) still makes the new cartridge a candidate,
    in the batch and the single-shopper paths alike, and stops offering it once it is removed."""
    catalog, log = shop
    frame = catalog.frame.copy()
    frame.loc[len(frame)] = {**frame.iloc[PER_CATEGORY].to_dict(), "item_id": "new-ink", "title": "ink printer new"}
    bigger = ItemCatalog(frame)
    model = ColdStartRecommender(encoder=FakeEncoder(), max_training_users=300, candidates_per_source=2).fit(log, bigger)
    new = len(bigger) - 1
    assert model.new_arrivals().tolist() == [new]
    ink_buyer = UserContext(items=[PER_CATEGORY, PER_CATEGORY + 1, PER_CATEGORY + 2])
    text = model.item_vectors[ink_buyer.items].mean(axis=0) @ model.item_vectors.T
    assert (text[:new] > text[new]).sum() >= 2  # the text sources alone would not reach it
    assert model.score([ink_buyer])[0, new] > -1e8
    assert new in model.rank(ink_buyer).items
    chair_buyer = UserContext(items=[2 * PER_CATEGORY])
    added = model.add_items(ItemCatalog.from_records(["new-chair"], ["chair ergonomic mesh new"]))
    assert sorted(model.new_arrivals().tolist()) == [new, int(added[0])]
    assert int(added[0]) in model.rank(chair_buyer).items
    model.remove_items([new])
    assert new not in model.rank(ink_buyer).items and model.new_arrivals().tolist() == [int(added[0])]


def test_new_arrival_slots_keep_the_top_10_and_give_positions_11_on_to_new_items(shop):
    """`new_arrival_slots`: the first 10 positions are the plain model's; the next s go to the shopper's
    best-scored never-bought items, never an excluded one; `recommend` applies it (so the evaluation does)."""
    catalog, log = shop
    frame = catalog.frame.copy()
    for j, title in enumerate(["ink printer new", "ink cartridge black new", "chair mesh new"]):
        frame.loc[len(frame)] = {**frame.iloc[PER_CATEGORY].to_dict(), "item_id": f"new{j}", "title": title}
    bigger = ItemCatalog(frame)
    plain = ColdStartRecommender(encoder=FakeEncoder(), max_training_users=300).fit(log, bigger)
    new = set(range(len(catalog), len(bigger)))
    contexts = [UserContext(items=[PER_CATEGORY, PER_CATEGORY + 1]), UserContext(items=[2 * PER_CATEGORY])]
    exclude = [np.array([len(catalog)]), np.zeros(0, np.int64)]  # the first shopper may not see new0
    before, _ = plain.recommend(contexts, 20, exclude)
    plain.new_arrival_slots = 2
    after, scores = plain.recommend(contexts, 20, exclude)
    np.testing.assert_array_equal(after[:, :10], before[:, :10])
    assert set(after[0, 10:12]) == {len(catalog) + 1, len(catalog) + 2}  # the two it may see
    assert len(catalog) not in after[0] and all(len(set(row)) == 20 for row in after)
    assert set(after[1, 10:12]) <= new and set(after[:, 12:].ravel()) <= set(before.ravel())
    assert np.isfinite(scores).all()


def test_interest_clustering_separates_groups():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    vectors = np.array([a + 0.1 * rng.standard_normal(16) for _ in range(4)] + [b + 0.1 * rng.standard_normal(16) for _ in range(3)])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    centroids, weights = cluster_interests(vectors.astype(np.float32), np.ones(7, np.float32), k=2)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    assert centroids[0] @ unit(a) > 0.95 and centroids[1] @ unit(b) > 0.95
    assert weights.tolist() == pytest.approx([4 / 7, 3 / 7])


def test_profiles_weight_purchases_over_views_and_recent_over_old():
    vectors = np.eye(4, dtype=np.float32)
    viewed_then_bought = UserContext(items=[0, 1], events=[0, 3])  # view item 0, buy item 1
    profile = build_interest_profiles([viewed_then_bought], vectors, None, decay=1.0, max_interests=1)
    assert profile.mean[0, 1] > profile.mean[0, 0] > 0
    old_then_new = UserContext(items=[2, 3])
    profile = build_interest_profiles([old_then_new], vectors, None, decay=0.5, max_interests=1)
    assert profile.mean[0, 3] > profile.mean[0, 2]


def test_pca_option_reduces_vectors(shop):
    catalog, log = shop
    model = ColdStartRecommender(encoder=FakeEncoder(), pca_dim=16, max_training_users=200).fit(log, catalog)
    assert model.item_vectors.shape == (len(catalog), 16)
    items, _ = top_n(model.score([UserContext(items=[0])]), 10)
    assert np.mean([category_of(i) == 0 for i in items[0]]) >= 0.6


def test_importance_names_every_feature(model):
    importance = model.explain_importance()
    assert set(importance) == set(FEATURES) and sum(importance.values()) == pytest.approx(1.0)


def test_new_items_can_borrow_behaviour_from_their_text_neighbours(shop):
    catalog, log = shop
    frame = catalog.frame.copy()
    twin = frame.iloc[0].to_dict()  # the best seller of category 0
    frame.loc[len(frame)] = {**twin, "item_id": "twin", "title": twin["title"] + " v2"}
    bigger = ItemCatalog(frame)
    new = len(bigger) - 1
    plain = ColdStartRecommender(encoder=FakeEncoder(), max_training_users=300).fit(log, bigger)
    borrowing = ColdStartRecommender(encoder=FakeEncoder(), max_training_users=300, neighbours_for_new_items=3).fit(log, bigger)
    assert plain.signals.borrowed_pop[new] == 0
    assert borrowing.signals.borrowed_pop[new] > 0.5 * borrowing.signals.pop[0]
    assert np.abs(borrowing.signals.item_factors[new]).sum() > 0
    # a shopper who bought the original now sees co-bought evidence for the twin too
    assert borrowing.signals.similarity[[1, 2]].sum(axis=0)[0, new] > 0


def test_two_fits_with_one_seed_give_the_same_lists(shop, model):
    """Reproducible: the same data and seed give the same scores, so the same top-10 lists."""
    catalog, log = shop
    again = ColdStartRecommender(encoder=FakeEncoder(), max_training_users=400).fit(log, catalog)
    contexts = [UserContext(items=[i, (7 * i) % len(catalog)]) for i in range(0, len(catalog), 3)]
    contexts += [UserContext(interests=["Staplers"]), UserContext()]
    np.testing.assert_array_equal(model.score(contexts), again.score(contexts))


def untimed(log: InteractionLog) -> InteractionLog:
    """The same shoppers as sequences without times: each event's time is its position in its user's sequence."""
    ordered = log.select(np.lexsort((log.order, log.time, log.user)))
    starts = np.searchsorted(ordered.user, ordered.user)
    return InteractionLog.from_arrays(ordered.user_ids, ordered.item, np.arange(len(ordered)) - starts, timed=False)


def test_an_untimed_log_trains_on_a_user_split_and_reads_no_time(shop, monkeypatch):
    """Without timestamps the ranker's inner cut is a user split, and the time-derived features (30-day and
    decayed popularity, item age, request gap) and the new-arrivals source are absent, not computed from the
    positions standing in for times: moving a request's times and clock changes no score."""
    import coldrec.recommend.coldstart as coldstart
    from coldrec.recommend.features import TIMED_FEATURES

    catalog, log = shop
    seen = []
    real = coldstart.training_examples

    def spy(inner, *args, **kwargs):
        seen.append(inner)
        return real(inner, *args, **kwargs)

    monkeypatch.setattr(coldstart, "training_examples", spy)
    model = ColdStartRecommender(encoder=FakeEncoder(), max_training_users=200).fit(untimed(log), catalog)
    inner = seen[0]  # then the first visitors held out for the first-visit choice
    assert len(seen) == 2 and set(seen[1].segments) == {"cold k=0"}
    assert inner.kind == "users" and {"cold k=0", "cold k=1", "cold k=3", "warm"} <= set(inner.segments)
    used = set(model.explain_importance())
    assert used == set(FEATURES) - TIMED_FEATURES
    assert model._pipeline.source("new_arrivals") is None and not model.signals.timed
    assert np.isnan(model.signals.pop30).all() and np.isnan(model.signals.age_days).all()
    early = [UserContext(items=[3, 5], times=[0, 1], now=0), UserContext()]
    late = [UserContext(items=[3, 5], times=[10**9, 2 * 10**9], now=3 * 10**9), UserContext(now=10**9)]
    np.testing.assert_array_equal(model.score(early), model.score(late))
    items, _ = top_n(model.score([UserContext(items=[2])]), 10, exclude=[np.array([2])])
    assert np.mean([category_of(i) == 0 for i in items[0]]) >= 0.6  # behaviour and text still work
    ranked = model.rank(early[0], 5)
    assert len(model.explain(early[0], ranked)) == 5


def test_too_little_behaviour_to_learn_the_ranker_is_a_clear_error(shop):
    """A shop with a handful of events (each shopper one item) has no simulated shopper with a target: the fit
    says so and names the models that need no ranker, rather than failing inside numpy."""
    catalog, _ = shop
    log = InteractionLog.from_arrays(np.array(["a", "b", "c"], dtype=object), np.array([0, 1, 2]),
                                     np.array([10, 20, 30]), np.full(3, 3, np.int8), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="too little behaviour to learn coldrec's ranker"):
        ColdStartRecommender(encoder=FakeEncoder()).fit(log, catalog)
