"""An `Engine` in a model directory (`coldrec.model`): the recommender, the searcher and the search floor.

The encoder is not saved (a language model is reloaded from its package) unless its class is registered
with `coldrec.model` as plain data (a small hashing encoder); its fingerprint is recorded either way, and a
directory fitted with another encoder than the one this process would load says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

from coldrec.model import ModelDirectoryError, load_model, save_model
from coldrec.model.registry import state_of

logger = logging.getLogger(__name__)


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
    searcher = Searcher(encoder=getattr(model, "encoder", None) or encoder)
    shares = shares_vectors(model)
    if not shares:
        searcher.dense_index = "auto"
        searcher.fit(catalog, vectors=item_vectors(searcher.encoder, catalog.texts()))
    engine = cls(model, searcher, fingerprint=data_fingerprint(catalog.ids, log.item, log.time, log.event))
    if shares:  # the searcher was not fitted: its lexical indexes are fitted now
        engine.refit_lexical()
    return engine


def shares_vectors(model) -> bool:
    """Are the model's item vectors the encoder's own (so the searcher can use them and their index)?"""
    return model.item_vectors is not None and not model.reduces_vectors


def save_engine(engine, directory: Path) -> None:
    """The caller holds the engine's locks."""
    model = engine.model
    encoder = engine.encoder
    state = {
        "model": model,
        "searcher": engine.searcher,
        "search_floor": float(engine.search_floor),
        "encoder": encoder if _is_data(encoder) else None,
    }
    extra = {"encoder": {"class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
                         "fingerprint": str(getattr(encoder, "fingerprint", ""))}}
    save_model(directory, state, kind=model.name, params=_json_params(model.get_params()),
               fingerprint=engine.fingerprint, extra=extra)


def load_engine(cls, directory: Path, encoder=None):
    state, manifest = load_model(directory)
    if not isinstance(state, dict) or not {"model", "searcher", "search_floor"} <= set(state):
        raise ModelDirectoryError(f"{directory}: holds a {manifest.kind} model directory, not a served engine's "
                                  "(write one with `coldrec build`)")
    model, searcher = state["model"], state["searcher"]
    if encoder is None:
        encoder = state.get("encoder")
    if encoder is None:
        from coldrec.encode.shared import default_encoder

        encoder = default_encoder()
        saved = manifest.extra.get("encoder", {}).get("fingerprint", "")
        if saved and str(getattr(encoder, "fingerprint", "")) != saved:
            logger.warning("%s was fitted with encoder %s; this process loads %s", directory, saved,
                           getattr(encoder, "fingerprint", "?"))
    if hasattr(model, "use_encoder"):
        model.use_encoder(encoder)
    searcher.use_encoder(encoder)
    return cls(model, searcher, search_floor=state["search_floor"], fingerprint=manifest.fingerprint)


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
