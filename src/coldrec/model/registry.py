"""Which classes a model directory may name, and how their instances become state and back.

Registered classes (`register_class`) and an allow-list of third-party data holders are the only
classes a load restores. A name is looked up in these tables before anything is imported; for an
allow-listed third-party name only that exact module is imported.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type] = {}


@dataclass(frozen=True)
class Adapter:
    """How an allow-listed third-party class is saved: `dump(obj) -> state`, `build(cls, state) -> obj`
    (None: the default `__getstate__` / `__setstate__`-or-`__dict__` path)."""

    dump: Callable[[Any], Any] | None = None
    build: Callable[[type, Any], Any] | None = None


def class_name(cls: type) -> str:
    """`module:QualName`, the name a model directory records."""
    return f"{cls.__module__}:{cls.__qualname__}"


def register_class(cls: T) -> T:
    """Allow instances of `cls` in model directories (usable as a decorator); returns `cls`.

    coldrec classes register when their module is imported; a load imports the coldrec modules the
    manifest names first. Attributes listed in a class attribute `__transient__` are never saved.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_class takes a class, not {type(cls).__name__}")
    if "<locals>" in cls.__qualname__:
        raise TypeError(f"{cls.__qualname__} is defined inside a function: its name does not identify it; "
                        "define it at module level")
    _REGISTRY[class_name(cls)] = cls
    return cls


# ------------------------------------------------------------------ third-party data holders

_ALS_INIT = ("factors", "regularization", "alpha", "dtype", "use_native", "use_cg", "iterations",
             "calculate_training_loss", "num_threads", "random_state")


def _dump_als(model: Any) -> dict:
    """implicit's CPU ALS: hyper-parameters and both factor matrices (the Gram and norm caches are
    recomputed on use; `fit_callback` is not kept)."""
    state = {name: getattr(model, name) for name in _ALS_INIT}
    state.update(cg_steps=model.cg_steps, item_factors=model.item_factors, user_factors=model.user_factors)
    return state


def _build_als(cls: type, state: dict) -> Any:
    """A fresh ALS from its constructor (whatever the installed implicit sets up), then the factors."""
    with warnings.catch_warnings():  # check_blas_config's thread advice: given at fit time already
        warnings.simplefilter("ignore", RuntimeWarning)
        model = cls(**{name: state[name] for name in _ALS_INIT})
    model.cg_steps = state["cg_steps"]
    model.item_factors, model.user_factors = state["item_factors"], state["user_factors"]
    return model


#: Third-party classes known to be plain data holders, by exact `module:QualName`.
THIRD_PARTY: dict[str, Adapter] = {
    "sklearn.decomposition._pca:PCA": Adapter(),  # sklearn's own __getstate__/__setstate__ (version-checked)
    "implicit.cpu.als:AlternatingLeastSquares": Adapter(_dump_als, _build_als),
    "lightfm.lightfm:LightFM": Adapter(),  # __dict__: hyper-parameters, embeddings, their optimiser state
}


def is_allowed(name: str) -> bool:
    """Whether a load may restore `name` (looked up, nothing imported)."""
    return name in _REGISTRY or name in THIRD_PARTY


def resolve(name: str) -> tuple[type, Adapter]:
    """The class named `name`: a registered one, or an allow-listed one (importing only its module).

    KeyError when the name is not allowed; ImportError / TypeError when it does not name that class.
    """
    cls = _REGISTRY.get(name)
    if cls is not None:
        return cls, Adapter()
    adapter = THIRD_PARTY[name]
    module_name, _, qualname = name.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    if not isinstance(found, type) or class_name(found) != name:
        raise TypeError(f"{name} does not name that class in the installed {module_name}")
    return found, adapter


def state_of(obj: Any) -> tuple[str, Any]:
    """(`module:QualName`, state) of an instance of a registered or allow-listed class.

    KeyError when its class is neither (a subclass of a registered class must register itself).
    """
    cls = type(obj)
    name = class_name(cls)
    if name in THIRD_PARTY:
        adapter = THIRD_PARTY[name]
        return name, adapter.dump(obj) if adapter.dump else _default_state(obj)
    if _REGISTRY.get(name) is not cls:
        raise KeyError(name)
    return name, _default_state(obj)


def _transient(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        names.update(klass.__dict__.get("__transient__", ()))
    return names


def _default_state(obj: Any) -> Any:
    """`obj.__getstate__()` without the `__transient__` attributes."""
    skip = _transient(type(obj))
    state = obj.__getstate__()
    drop = (lambda d: {k: v for k, v in d.items() if k not in skip}) if skip else dict
    if isinstance(state, dict):
        return drop(state)
    if type(obj).__getstate__ is object.__getstate__ and isinstance(state, tuple) and len(state) == 2:
        dict_state, slots = state  # the default state of a class with __slots__
        return ("$slots", drop(dict_state or {}), drop(slots or {}))
    return state


def new_instance(cls: Any) -> Any:
    """An instance without running `__init__` (state applied after)."""
    return cls.__new__(cls)


def apply_state(obj: Any, state: Any) -> None:
    """`__setstate__(state)` where the class defines it, else the attributes (and slots) set from the state."""
    slots: dict = {}
    if isinstance(state, tuple) and len(state) == 3 and state[0] == "$slots":
        _, dict_state, slots = state
        state = (dict_state or None, slots)  # the form pickle passes to __setstate__
    setstate = getattr(type(obj), "__setstate__", None)
    if setstate is not None:
        setstate(obj, state)
        return
    if slots:
        state = state[0]
        for key, value in slots.items():
            object.__setattr__(obj, key, value)
    if isinstance(state, dict):
        obj.__dict__.update(state)
    elif state is not None:
        raise TypeError(f"{class_name(type(obj))} has no __setstate__ for a {type(state).__name__} state")
