"""The engine under concurrent use: writes encode outside the lock reads take, request-time encoding is bounded
and cached, writers stay consistent."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from coldrec.serve.engine import Engine
from coldrec.serve.requests import MAX_STATED_INTERESTS, REQUEST_ENCODE_BUDGET
from tests.synthetic import FakeEncoder
from tests.test_engine import PARAMS, context_of, ids, shop

SLOW = "slowpoke"  # item texts holding this word block in encode until released


class GatedEncoder(FakeEncoder):
    """FakeEncoder that notes, per call, the texts, the thread and whether the engine's read lock was held,
    and blocks texts holding SLOW until `release` is set."""

    def __init__(self):
        super().__init__()
        self.engine: Engine | None = None
        self.log: list[tuple[list[str], int, bool]] = []
        self.entered, self.release = threading.Event(), threading.Event()
        self.release.set()

    def encode(self, texts, batch_size=64, show_progress=None):
        held = self.engine is not None and self.engine._lock._is_owned()
        self.log.append((list(texts), threading.get_ident(), held))
        if any(SLOW in text for text in texts):
            self.entered.set()
            assert self.release.wait(30)
        return super().encode(texts, batch_size, show_progress)

    def texts_on(self, thread: int, since: int = 0) -> list[str]:
        return [text for texts, ident, _ in self.log[since:] if ident == thread for text in texts]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    catalog, log = shop()
    directory = tmp_path_factory.mktemp("engine")
    Engine.build(catalog, log, encoder=FakeEncoder(), model_params=PARAMS).save(directory)
    return directory


@pytest.fixture
def gated(fitted):
    encoder = GatedEncoder()
    engine = Engine.load(fitted, encoder=encoder)
    encoder.engine = engine
    yield engine, encoder
    encoder.release.set()  # never leave a writer blocked


def started(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def items(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [r[0] for r in rows], "title": [r[1] for r in rows]})


def test_reads_go_on_while_an_add_encodes(gated):
    """While a write's encoding is blocked, recommend, similar and search answer (before: they waited behind
    the add, which held the lock through its encoding); the new item appears once the write completes."""
    engine, encoder = gated
    context = engine.context(context_of(engine, ["i0", "i1"]), ["Electronics"])
    engine.search("stapler", 5)
    encoder.release.clear()
    writer = started(engine.add_items, items(("slow1", f"stapler {SLOW} deluxe")))
    assert encoder.entered.wait(10)
    answers = []
    reader = started(lambda: answers.extend([engine.recommend(context, 5), engine.similar("i0", 5),
                                             engine.search("stapler", 5)]))
    reader.join(10)
    assert not reader.is_alive() and all(answers)
    assert writer.is_alive() and not engine.has_item("slow1")  # not swapped in until encoded
    encoder.release.set()
    writer.join(10)
    assert engine.has_item("slow1") and "slow1" in ids(engine.similar("i0", 30, include_unavailable=True))
    assert not any(held for _, _, held in encoder.log)  # nothing was ever encoded under the read lock


def test_sync_items_never_waits_for_a_write_under_way(gated):
    """The store's rows of an add still encoding (what a read's catch-up sees right after POST /items stored
    them) are queued, not waited for and not encoded twice; other changes in them land right after the add."""
    engine, encoder = gated
    n = len(engine.catalog)
    encoder.release.clear()
    slow = items(("slow1", f"stapler {SLOW} deluxe"))
    writer = started(engine.add_items, slow)
    assert encoder.entered.wait(10)
    rows = pd.concat([slow, items(("other", "router cable mini"))], ignore_index=True).assign(deleted=False)
    rows.loc[len(rows)] = {"item_id": "i3", "title": engine.catalog.frame["title"][3], "deleted": True}
    answered = []
    syncing = started(lambda: answered.append(engine.sync_items(rows)))
    syncing.join(10)
    assert answered == [0] and writer.is_alive()
    encoder.release.set()
    writer.join(10)
    deadline = time.monotonic() + 10
    while (not engine.has_item("other") or engine.has_item("i3")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.has_item("other") and engine.has_item("slow1") and not engine.has_item("i3")
    assert len(engine.catalog) == n + 2
    encoded = [text for texts, _, _ in encoder.log for text in texts]
    assert sum(SLOW in text for text in encoded) == 1
    assert engine.sync_items(rows) == 0  # in step now
    assert not any(held for _, _, held in encoder.log)


def test_concurrent_writes_of_one_item_stay_consistent(gated):
    """Two adds of one id: one wins whole (its title and its vector); an add racing a remove: the remove waits
    for the add, so the item ends removed."""
    engine, encoder = gated
    n = len(engine.catalog)
    encoder.release.clear()
    first = started(engine.add_items, items(("twin", f"router cable keyboard {SLOW}")))
    assert encoder.entered.wait(10)
    second = started(engine.add_items, items(("twin", "stapler paper binder envelope")))
    time.sleep(0.05)
    assert second.is_alive()  # waits for the first writer
    encoder.release.set()
    first.join(10)
    second.join(10)
    assert len(engine.catalog) == n + 1
    position = int(engine.catalog.index_of(["twin"])[0])
    assert engine.catalog.frame["title"][position] == "stapler paper binder envelope"
    assert {r.category for r in engine.similar("twin", 3)} == {"Office > Paper Goods"}

    encoder.entered.clear()
    encoder.release.clear()
    writer = started(engine.add_items, items(("racer", f"router {SLOW}")))
    assert encoder.entered.wait(10)
    removed = []
    remover = started(lambda: removed.append(engine.remove_item("racer")))
    remover.join(0.1)
    assert remover.is_alive()
    encoder.release.set()
    writer.join(10)
    remover.join(10)
    assert removed == [True] and not engine.has_item("racer")
    assert "racer" not in ids(engine.similar("i12", 30, include_unavailable=True))


def test_a_request_encodes_few_uncached_interests_the_rest_later(gated):
    """100 distinct long interests: a request encodes at most REQUEST_ENCODE_BUDGET itself, outside the lock;
    the first MAX_STATED_INTERESTS are used (the rest never encoded), and once the background has encoded them
    the next request encodes nothing."""
    engine, encoder = gated
    interests = [f"interest {i} " + "ergonomic stapler with paper tray and binder clip " * 3 for i in range(100)]
    context = engine.context(None, interests)
    mark = len(encoder.log)
    assert engine.recommend(context, 5)
    assert len(encoder.texts_on(threading.get_ident(), mark)) <= REQUEST_ENCODE_BUDGET
    assert engine._texts.texts.wait_warm(10)
    encoded = {text for texts, _, _ in encoder.log[mark:] for text in texts}
    assert encoded == {text.strip() for text in interests[:MAX_STATED_INTERESTS]}
    mark = len(encoder.log)
    results = engine.recommend(context, 5)
    assert results and len(encoder.log) == mark
    assert not any(held for _, _, held in encoder.log)


def test_prepare_texts_makes_the_next_request_encode_nothing(gated):
    engine, encoder = gated
    interests = [f"my interest {i} in cable routers" for i in range(15)]
    assert engine.prepare_texts(interests + ["  ", interests[0]]) == MAX_STATED_INTERESTS
    assert engine.prepare_texts(interests) == 0
    mark = len(encoder.log)
    assert engine.recommend(engine.context(None, interests), 5)
    assert len(encoder.log) == mark


def test_search_queries_are_encoded_once(gated):
    """A query's vector is cached (in memory, keyed by the normalised query): the same query, spaced differently,
    costs no encoding; a shopper's context texts are bounded like recommend's."""
    engine, encoder = gated
    engine.search("router  cable", 5)
    mark = len(encoder.log)
    first = ids(engine.search("router cable", 5))
    assert ids(engine.search(" router cable ", 5)) == first and len(encoder.log) == mark
    searched = engine.context(pd.DataFrame({"item_id": [None], "time": [engine.model.now], "event": [5],
                                            "query": ["router cable"]}), [])
    assert searched.queries == ["router cable"] and engine.recommend(searched, 5)
    assert len(encoder.log) == mark  # the next request's context reuses the search's vector
    shopper = engine.context(None, [f"long stated interest {i}" for i in range(50)])
    assert engine.search("router", 5, context=shopper)
    assert len(encoder.texts_on(threading.get_ident(), mark)) <= 1 + REQUEST_ENCODE_BUDGET  # the query + the budget
    assert not any(held for _, _, held in encoder.log)
