"""Order in the log (directed transitions, session-kNN) and the first-visit list, against independent
reference computations and on a generated shop where what comes next is known."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse as sp

from coldrec.data import InteractionLog, ItemCatalog, UserContext
from coldrec.data.split import Segment
from coldrec.recommend.coldstart import ColdStartRecommender, WithoutSequentialEvidence
from coldrec.recommend.firstvisit import choose_first_visit_list, hold_out_first_visitors, nothing_known
from coldrec.recommend.sequential import directed_transitions, neighbour_shares, recent_sequences
from coldrec.retrieve.ranking import top_n
from tests.synthetic import FakeEncoder

DAY = 86_400


def small_log(timed: bool = True) -> InteractionLog:
    # u1: 0 1 2 1 3 ; u2: 2 3 ; u3: 4 (events given out of time order on purpose)
    rows = [("u1", 2, 30), ("u2", 2, 5), ("u1", 0, 10), ("u1", 1, 20), ("u1", 1, 40), ("u1", 3, 50),
            ("u2", 3, 6), ("u3", 4, 7)]
    users, items, times = (np.array(column) for column in zip(*rows, strict=True))
    log = InteractionLog.from_arrays(users, items, times * DAY)
    return log if timed else _untimed(log)


def _untimed(log: InteractionLog) -> InteractionLog:
    ordered = log.sorted_by_time()
    ordered.timed = False
    return ordered


def reference_transitions(log: InteractionLog, n: int, window: int, half_life_days: float | None, now: int):
    sequences = defaultdict(list)
    for position in np.lexsort((log.order, log.time)):
        sequences[log.user[position]].append((int(log.item[position]), int(log.time[position])))
    counts = np.zeros((n, n))
    for events in sequences.values():
        for a, (i, _) in enumerate(events):
            for step in range(1, window + 1):
                if a + step < len(events) and events[a + step][0] != i:
                    j, t = events[a + step]
                    recency = 2 ** (-(now - t) / (half_life_days * DAY)) if half_life_days else 1.0
                    counts[i, j] += recency / step
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


@pytest.mark.parametrize("window", [1, 2, 3])
def test_directed_transitions_match_a_reference(window):
    log = small_log()
    now = int(log.time.max())
    got = directed_transitions(log, 6, window, half_life_days=30.0, now=now).toarray()
    np.testing.assert_allclose(got, reference_transitions(log, 6, window, 30.0, now), rtol=1e-5, atol=1e-7)
    assert got[1, 0] == 0 and got[0, 1] > 0  # directed: 0 came before 1, never after
    assert got[1, 1] == 0  # u1's 1 .. 1 is a rebuy, not a transition
    assert np.allclose(got.sum(axis=1)[[0, 1, 2]], 1.0) and got[4].sum() == 0 and got[5].sum() == 0


def test_an_untimed_log_weights_transitions_by_distance_only():
    log = small_log(timed=False)
    got = directed_transitions(log, 6, 2, now=10**9).toarray()  # a clock on an untimed log changes nothing
    np.testing.assert_allclose(got, reference_transitions(log, 6, 2, None, 0), rtol=1e-6)
    # from 2: u1 goes on to 1 (1 step: 1) and 3 (2 steps: 1/2); u2 goes to 3 (1 step: 1) -> 1 : 1.5
    np.testing.assert_allclose(got[2], [0, 0.4, 0, 0.6, 0, 0], rtol=1e-6)


def test_recent_sequences_keep_each_users_last_distinct_items():
    log = small_log()
    got = recent_sequences(log, 6, length=2)
    users = list(log.users)
    rows = {users[code]: set(got[code].indices.tolist()) for code in range(len(users))}
    assert rows == {"u1": {1, 3}, "u2": {2, 3}, "u3": {4}}  # u1: 0 2 1 3 in last-occurrence order
    assert set(recent_sequences(log, 6, length=50)[users.index("u1")].indices) == {0, 1, 2, 3}


def test_neighbour_shares_weigh_the_nearest_sequences():
    sequences = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 1], [0, 0, 0, 1]], np.float32))
    known = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0]], np.float32))
    got = neighbour_shares(known, sequences, neighbours=5).toarray()
    s1, s2 = 1 / np.sqrt(2), 1 / np.sqrt(3)  # overlap 1 with sequences 0 and 1, scaled by their lengths
    expected = (s1 * sequences[0].toarray() + s2 * sequences[1].toarray()) / (s1 + s2)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
    assert got[1].sum() == 0  # no overlap, no neighbours
    only_nearest = neighbour_shares(known, sequences, neighbours=1).toarray()
    np.testing.assert_allclose(only_nearest[0], sequences[0].toarray()[0])


# ---------------------------------------------------------------- a shop where order matters
N_ITEMS = 60


def ordered_shop(n_users: int = 500, seed: int = 0):
    """Shoppers walk a fixed route through the catalog (item i, then i + 1, ...; a few random steps), starting
    anywhere: what comes next is determined by order alone, and co-occurrence cannot tell i + 1 from i - 1.
    Titles are random words, so text knows nothing either."""
    rng = np.random.default_rng(seed)
    words = np.array(["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"])
    titles = [" ".join(rng.choice(words, 3)) + f" no{i}" for i in range(N_ITEMS)]
    catalog = ItemCatalog.from_records([str(i) for i in range(N_ITEMS)], titles)
    users, items, times = [], [], []
    for u in range(n_users):
        at, start = int(rng.integers(N_ITEMS)), rng.uniform(0, 600) * DAY
        for step in range(int(rng.integers(4, 9))):
            users.append(f"u{u}")
            items.append(at)
            times.append(int(start + step * DAY))
            at = (at + 1) % N_ITEMS if rng.random() < 0.9 else int(rng.integers(N_ITEMS))
    order = np.argsort(times, kind="stable")
    return catalog, InteractionLog.from_arrays(np.array(users)[order], np.array(items)[order], np.array(times)[order])


@pytest.fixture(scope="module")
def ordered():
    catalog, log = ordered_shop()
    fitted = {cls.name: cls(encoder=FakeEncoder(), max_training_users=400).fit(log, catalog)
              for cls in (ColdStartRecommender, WithoutSequentialEvidence)}
    return catalog, log, fitted


def next_item_hits(model, start_items) -> float:
    contexts = [UserContext(items=[i]) for i in start_items]
    top, _ = top_n(model.score(contexts), 3, exclude=[np.array([i]) for i in start_items])
    return float(np.mean([(i + 1) % N_ITEMS in row for i, row in zip(start_items, top, strict=True)]))


def test_transitions_find_what_comes_next(ordered):
    catalog, _, fitted = ordered
    starts = np.arange(N_ITEMS)
    with_order = next_item_hits(fitted["coldrec"], starts)
    without = next_item_hits(fitted["coldrec-unordered"], starts)
    assert with_order >= 0.9 and with_order > without + 0.1, (with_order, without)
    importance = fitted["coldrec"].explain_importance()
    assert importance["transition"] > 0 and "transition" not in fitted["coldrec-unordered"].explain_importance()


def test_a_switched_off_source_takes_its_feature_with_it(ordered):
    _, _, fitted = ordered
    unordered = fitted["coldrec-unordered"]
    assert unordered._pipeline.source("transitions") is None and unordered._pipeline.source("session_knn") is None
    assert {"transition", "session_knn"}.isdisjoint(unordered._pipeline.feature_names)
    assert {"transition", "session_knn"} <= set(fitted["coldrec"]._pipeline.feature_names)


def test_a_new_item_joins_the_sequential_evidence_empty():
    catalog, log = ordered_shop(200, seed=1)
    model = ColdStartRecommender(encoder=FakeEncoder(), max_training_users=200).fit(log, catalog)
    before = model.score([UserContext(items=[5, 6])])[0]
    (position,) = model.add_items(ItemCatalog.from_records(["new"], ["alpha beta fresh"]))
    assert model.signals.transitions.shape == (N_ITEMS + 1, N_ITEMS + 1)
    assert model.signals.sequences.shape == (len(log.users), N_ITEMS + 1)
    assert model.signals.transitions[position].nnz == 0 and model.signals.sequences[:, position].nnz == 0
    after = model.score([UserContext(items=[5, 6])])[0]
    np.testing.assert_array_equal(after[:N_ITEMS], before)  # nothing the old items had changed
    assert model.score([UserContext(items=[5, 6, position])]).shape == (1, N_ITEMS + 1)


# ---------------------------------------------------------------- the first visit
def test_the_best_list_on_held_out_first_visitors_is_chosen():
    scores = {"ranker": np.array([0.0, 1.0, 2.0, 3.0]), "pop": np.array([3.0, 2.0, 1.0, 0.0])}
    visitors = Segment("cold k=0", [UserContext()] * 3, [np.array([0]), np.array([1]), np.array([0, 2])],
                       [np.zeros(0, np.int64)] * 3)
    tie_break = np.arange(4)
    best, quality = choose_first_visit_list(scores, visitors, tie_break)
    assert best == "pop" and quality["pop"] > quality["ranker"]
    # hand-computed NDCG@10 for "pop" (order 0 1 2 3): 1, 1/log2(3), (1 + 1/log2(4)) / (1 + 1/log2(3))
    expected = (1 + 1 / np.log2(3) + (1 + 0.5) / (1 + 1 / np.log2(3))) / 3
    assert quality["pop"] == pytest.approx(expected)
    assert choose_first_visit_list({"ranker": scores["ranker"], "pop": scores["ranker"]}, visitors,
                                   tie_break)[0] == "pop"  # a tie: popularity
    assert choose_first_visit_list({"ranker": scores["ranker"], "pop": scores["pop"], "pop30": scores["pop"]},
                                   visitors, tie_break)[0] == "pop"  # tied popularity lists: the earlier
    assert choose_first_visit_list(scores, None, tie_break) == ("pop", {})
    assert choose_first_visit_list({"ranker": scores["ranker"]}, visitors, tie_break)[0] == "ranker"


def test_the_ranker_replaces_popularity_only_when_better_beyond_chance():
    rng = np.random.default_rng(0)
    n_items = 50
    ranker, pop = rng.permutation(n_items).astype(float), rng.permutation(n_items).astype(float)
    by_ranker, by_pop = np.argsort(-ranker), np.argsort(-pop)
    tie_break = np.arange(n_items)

    def visitors(ranker_hits: int, pop_hits: int, misses: int) -> Segment:
        """Shoppers whose one target is the ranker's first item, popularity's first, or neither's top 10."""
        miss = next(int(i) for i in range(n_items) if i not in by_ranker[:10] and i not in by_pop[:10])
        targets = ([np.array([by_ranker[0]])] * ranker_hits + [np.array([by_pop[0]])] * pop_hits
                   + [np.array([miss])] * misses)
        return Segment("cold k=0", [UserContext()] * len(targets), targets, [np.zeros(0, np.int64)] * len(targets))

    lists = {"ranker": ranker, "pop": pop}
    # ahead by 3 shoppers of 40: a better mean, not beyond chance
    best, quality = choose_first_visit_list(lists, visitors(8, 5, 27), tie_break)
    assert quality["ranker"] > quality["pop"] and best == "pop"
    # ahead by 60 of 400: beyond chance
    assert choose_first_visit_list(lists, visitors(110, 50, 240), tie_break)[0] == "ranker"


def test_lists_given_as_noise_draws_are_judged_by_their_mean_over_the_draws():
    visitors = Segment("cold k=0", [UserContext()] * 2, [np.array([0]), np.array([1])], [np.zeros(0, np.int64)] * 2)
    tie_break = np.arange(12)
    first = np.arange(12, 0, -1).astype(float)  # 0 first, 1 second
    buried = first.copy()
    buried[[0, 1]] = -1  # both targets out of the top 10
    steady = np.stack([first, first])  # both draws hit
    lucky = np.stack([first, buried])  # one draw hits, the other misses both
    best, quality = choose_first_visit_list({"pop": lucky, "pop30": steady}, visitors, tie_break)
    assert best == "pop30"
    one_draw = choose_first_visit_list({"pop": first}, visitors, tie_break)[1]["pop"]
    assert quality["pop30"] == pytest.approx(one_draw) and quality["pop"] == pytest.approx(one_draw / 2)


def test_first_visitors_are_split_in_two_disjoint_halves(ordered):
    from coldrec.recommend.training import inner_split

    catalog, log, _ = ordered
    inner = inner_split(log, catalog, onboarding=False)
    learn, held_out = hold_out_first_visitors(inner)
    whole = inner.segments["cold k=0"]
    assert held_out is not None and len(learn.segments["cold k=0"]) + len(held_out) == len(whole)
    ids = {c.user_id for c in learn.segments["cold k=0"].contexts}
    assert ids.isdisjoint(c.user_id for c in held_out.contexts) and abs(len(ids) - len(held_out)) <= 1
    assert learn.segments["cold k=1"] is inner.segments["cold k=1"]


def test_a_first_visit_gets_the_chosen_list_everywhere(ordered):
    """Whatever list fit chose, a shopper with nothing known gets exactly it from `score`, `rank` and the
    explanation, and a shopper with anything known (an item, a stated interest) gets the ranker."""
    _, _, fitted = ordered
    model = fitted["coldrec"]
    chosen = model.first_visit_list_
    assert chosen in model.first_visit_ndcg_
    assert nothing_known(UserContext()) and not nothing_known(UserContext(interests=["pens"]))
    for name in ("pop", "decayed_pop"):
        model.first_visit_list_ = name
        values = getattr(model.signals, name)
        by_pop = np.argsort(np.argsort(-model.signals.pop, kind="stable"))
        top, _ = top_n(model.score([UserContext()]), 10, tie_break=by_pop)
        expected = np.lexsort((np.arange(N_ITEMS), -model.signals.pop, -values))[:10]
        np.testing.assert_array_equal(top[0], expected)
        ranked = model.rank(UserContext(), 10)
        np.testing.assert_array_equal(ranked.items, expected)
        assert all(set(e.contributions) == {"popularity"} for e in model.explain(UserContext(), ranked))
    model.first_visit_list_ = "ranker"
    ranker_list = model.score([UserContext()])[0]
    model.first_visit_list_ = "pop"
    stated = UserContext(interests=["alpha"])
    assert not np.array_equal(model.score([stated])[0], model.score([UserContext()])[0])
    model.first_visit_list_ = "ranker"
    np.testing.assert_array_equal(model.score([UserContext()])[0], ranker_list)
    model.first_visit_list_ = chosen
