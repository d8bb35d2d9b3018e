"""An `Engine` in a model directory (`coldrec.model`): the recommender, the searcher and the search floor.

The encoder is not saved (a language model is reloaded from its package) unless its class is registered
with `coldrec.model` as plain data (a small hashing encoder); its fingerprint is recorded either way, and a
directory fitted with another encoder than the one this process would load says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

from coldrec.model import load_model, save_model
from coldrec.model.registry import state_of

logger = logging.getLogger(__name__)


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
