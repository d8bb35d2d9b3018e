"""The object graph codec: a model as `state.json` (JSON with `$`-tagged nodes) plus part files.

Inline: None, bool, int, str, float (`{"$float": "nan"}` for non-finite), lists, `{"$tuple"}`, dicts
(str keys not starting with "$"; others `{"$dict": [[k, v], ...]}`), `{"$set"}`, `{"$frozenset"}`,
`{"$bytes"}` (base64), numpy scalars `{"$scalar": dtype, "value"}` and dtypes `{"$dtype"}`.
Parts: `{"$array"}` (.npy), `{"$sparse"}` (its arrays), `{"$frame"}` / `{"$series"}` (parquet),
`{"$lightgbm"}` (text model), `{"$faiss"}` (faiss index file); `{"$random_state"}` / `{"$generator"}`;
instances `{"$object": "module:QualName", "state": ...}` of registered / allow-listed classes only.

Identity: an object, array, frame, sparse matrix, booster or index reached twice is written once
(the first node gets `"ref": n`, later ones are `{"$ref": n}`); cycles may pass through objects.
Lists, tuples, dicts and sets are copied per reference and may not form cycles.
"""

from __future__ import annotations

import base64
import functools
import math
import re
import types
from pathlib import Path
from typing import Any

import numpy as np

from coldrec.model import parts, registry
from coldrec.model.manifest import REBUILD, STATE, ModelDirectoryError

_CONTAINERS = (list, tuple, dict, set, frozenset)
_CODE = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType, type, functools.partial)
_PART_TAGS = ("$array", "$sparse", "$frame", "$series", "$lightgbm", "$faiss", "$object", "$ref")
TAGS = ("$float", "$tuple", "$dict", "$set", "$frozenset", "$bytes", "$scalar", "$dtype", "$array", "$sparse",
        "$frame", "$series", "$lightgbm", "$faiss", "$random_state", "$generator", "$object", "$ref")


class Encoder:
    """Walks a model, writing parts under `root` (the temp dir); `files` and `modules` for the manifest."""

    def __init__(self, root: Path, directory: Path) -> None:
        self.root, self.directory = root, directory
        self.files: list[str] = []
        self.modules: set[str] = set()
        self._memo: dict[int, tuple[Any, dict]] = {}  # id -> (the value, kept alive; its node)
        self._refs = 0
        self._open: set[int] = set()  # containers being encoded (cycle check)

    def refuse(self, path: str, why: str) -> ModelDirectoryError:
        return ModelDirectoryError(f"{self.directory}: cannot save {path}: {why}")

    def encode(self, value: Any, path: str, inline: bool = False) -> Any:
        kind = type(value)
        if value is None or kind in (bool, int, str):
            return value
        if kind is float:
            return value if math.isfinite(value) else {"$float": repr(value)}
        if kind in _CONTAINERS:
            return self._container(value, path, inline)
        if kind is bytes:
            return {"$bytes": base64.b64encode(value).decode("ascii")}
        if isinstance(value, np.generic):
            return self._scalar(value, path)
        if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
            dtype = np.dtype(value)
            if dtype.fields is not None:
                raise self.refuse(path, f"a structured dtype ({dtype}) is not saved")
            return {"$dtype": dtype.str, **({"type": True} if isinstance(value, type) else {})}
        if inline:
            raise self.refuse(path, f"a DataFrame object column holds a {kind.__name__}; only JSON-like values "
                                    "(str, numbers, None, lists, dicts, tuples) are saved in object columns")
        seen = self._memo.get(id(value))
        if seen is not None:
            node = seen[1]
            if "ref" not in node:
                node["ref"] = self._refs = self._refs + 1
            return {"$ref": node["ref"]}
        created: dict = {}
        self._memo[id(value)] = (value, created)
        try:
            created.update(self._part(value, path, created))
        except parts.PartError as error:
            raise self.refuse(path, str(error)) from error
        return created

    # ------------------------------------------------------------------ inline values

    def _container(self, value: Any, path: str, inline: bool) -> Any:
        if id(value) in self._open:
            raise self.refuse(path, f"this {type(value).__name__} contains itself (only objects may form cycles)")
        self._open.add(id(value))
        try:
            if isinstance(value, dict):
                return self._dict(value, path, inline)
            items = value
            if isinstance(value, (set, frozenset)):
                try:
                    items = sorted(value)
                except TypeError:
                    items = list(value)
            encoded = [self.encode(v, f"{path}[{i}]", inline) for i, v in enumerate(items)]
            if type(value) is list:
                return encoded
            tags: dict[type, str] = {tuple: "$tuple", set: "$set", frozenset: "$frozenset"}
            return {tags[type(value)]: encoded}
        finally:
            self._open.discard(id(value))

    def _dict(self, value: dict, path: str, inline: bool, attributes: bool = False) -> Any:
        def child(key: Any) -> str:
            return f"{path}.{key}" if attributes and type(key) is str else f"{path}[{key!r}]"

        if all(type(k) is str and not k.startswith("$") for k in value):
            return {k: self.encode(v, child(k), inline) for k, v in value.items()}
        return {"$dict": [[self.encode(k, f"{path} key {k!r}", inline), self.encode(v, child(k), inline)]
                          for k, v in value.items()]}

    def _scalar(self, value: np.generic, path: str) -> dict:
        dtype = value.dtype
        if dtype.kind in "biuf":
            item: Any = value.item() if dtype.kind != "f" else float(value)
            encoded = self.encode(item, path)
        elif dtype.kind == "c":
            encoded = [self.encode(float(value.real), path), self.encode(float(value.imag), path)]
        elif dtype.kind in "Mm":
            encoded = int(value.view(np.int64))
        elif dtype.kind == "U":
            encoded = str(value)
        elif dtype.kind == "S":
            encoded = base64.b64encode(value.tobytes()).decode("ascii")
        else:
            raise self.refuse(path, f"a numpy {dtype} scalar is not saved")
        return {"$scalar": dtype.str, "value": encoded}

    # ------------------------------------------------------------------ parts and objects

    def _file(self, folder: str, path: str, suffix: str) -> tuple[str, Path]:
        name = re.sub(r"\[['\"]?([^\]'\"]*)['\"]?\]", r".\1", path.removeprefix("model"))
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[-60:].strip("._") or "value"
        rel = f"{folder}/{len(self.files):04d}-{slug}{suffix}"
        (self.root / folder).mkdir(exist_ok=True)
        self.files.append(rel)
        return rel, self.root / rel

    def _array(self, array: np.ndarray, path: str) -> dict:
        saved, as_object = parts.array_to_save(array)
        rel, file = self._file("arrays", path, ".npy")
        parts.write_array(file, saved)
        return {"$array": rel, **({"object": True} if as_object else {})}

    def _part(self, value: Any, path: str, node: dict) -> dict:
        module = type(value).__module__
        if isinstance(value, np.ndarray):
            return self._array(value, path)
        if module.startswith("scipy.sparse"):
            import scipy.sparse as sp

            if sp.issparse(value):
                fmt, is_array, arrays = parts.sparse_parts(value)
                shape = [int(n) for n in arrays.pop("shape")]
                encoded = {k: self._array(a, f"{path}.{k}") for k, a in arrays.items()}
                return {"$sparse": fmt, "array": is_array, "shape": shape, **encoded}
        if module.startswith("pandas"):
            import pandas as pd

            if isinstance(value, (pd.DataFrame, pd.Series)):
                return self._frame(value, path)
        if isinstance(value, np.random.RandomState):
            return {"$random_state": self.encode(value.get_state(legacy=False), f"{path}.state")}
        if isinstance(value, np.random.Generator):
            return {"$generator": self.encode(value.bit_generator.state, f"{path}.state")}
        if parts.is_booster(value):
            rel, file = self._file("lightgbm", path, ".txt")
            return {"$lightgbm": rel, **parts.write_booster(file, value)}
        kind = parts.faiss_kind(value)
        if kind is not None:
            rel, file = self._file("faiss", path, ".faiss")
            parts.write_faiss(file, value, kind)
            return {"$faiss": rel, "kind": kind}
        if isinstance(value, _CODE):
            raise self.refuse(path, f"{type(value).__name__} {value!r} is code, not data; mark the attribute "
                                    "__transient__ (and rebuild it on load)")
        return self._object(value, path, node)

    def _frame(self, value: Any, path: str) -> dict:
        import pandas as pd

        series = isinstance(value, pd.Series)
        rel, file = self._file("frames", path, ".parquet")
        frame = value.to_frame(name="values") if series else value
        meta = parts.frame_to_parquet(frame, file, lambda v, where: self.encode(v, f"{path}{where}", inline=True))
        if series:
            return {"$series": rel, "name": self.encode(value.name, f"{path}.name", inline=True), **meta}
        return {"$frame": rel, **meta}

    def _object(self, value: Any, path: str, node: dict) -> dict:
        cls = type(value)
        try:
            name, state = registry.state_of(value)
        except KeyError:
            raise self.refuse(path, f"its class {registry.class_name(cls)} is not registered: decorate it with "
                                    "@coldrec.model.register_class, or list the attribute in its class's "
                                    "__transient__") from None
        node["$object"] = name  # before the state: a cycle back to this object becomes a $ref to it
        if cls.__module__.startswith("coldrec."):
            self.modules.add(cls.__module__)
        if isinstance(state, dict):
            self._open.add(id(state))
            try:
                node["state"] = self._dict(state, path, False, attributes=True)
            finally:
                self._open.discard(id(state))
        else:
            node["state"] = self.encode(state, f"{path}.__getstate__()")
        return node


class Decoder:
    """Rebuilds a model from `state.json`'s root; reads only parts listed in the manifest."""

    def __init__(self, directory: Path, files: dict[str, str], mmap: bool) -> None:
        self.directory, self.files, self.mmap = directory, files, mmap
        self._refs: dict[int, Any] = {}

    def refuse(self, path: str, why: str, file: str = STATE) -> ModelDirectoryError:
        return ModelDirectoryError(f"{self.directory / file}: cannot load {path}: {why}; {REBUILD}")

    def check_classes(self, node: Any) -> None:
        """Refuse any `$object` not registered or allow-listed, before anything is imported for one."""
        unknown = {repr(item["$object"]) for item in _dicts(node) if "$object" in item
                   and not (isinstance(item["$object"], str) and registry.is_allowed(item["$object"]))}
        if unknown:
            raise ModelDirectoryError(
                f"{self.directory / STATE}: names classes that are neither registered nor allow-listed: "
                f"{', '.join(sorted(unknown))}; nothing was imported for them. Load it with the coldrec that "
                f"wrote it (whose modules register them), or {REBUILD}")

    def decode(self, node: Any, path: str) -> Any:
        if node is None or type(node) in (bool, int, str, float):
            return node
        if type(node) is list:
            return [self.decode(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if type(node) is not dict:
            raise self.refuse(path, f"a {type(node).__name__} node")
        tags = [k for k in node if k.startswith("$")]
        if not tags:
            return {k: self.decode(v, f"{path}[{k!r}]") for k, v in node.items()}
        if len(tags) != 1 or tags[0] not in TAGS:
            raise self.refuse(path, f"unknown tags {tags}")
        tag = tags[0]
        try:
            value = getattr(self, "_" + tag[1:])(node, node[tag], path)
        except ModelDirectoryError:
            raise
        except parts.PartError as error:
            part = node[tag] if isinstance(node[tag], str) and node[tag] in self.files else STATE
            raise self.refuse(path, str(error), part) from error
        except Exception as error:  # noqa: BLE001 - a malformed node, whatever it breaks
            raise self.refuse(path, f"a malformed {tag} node ({type(error).__name__}: {error})") from error
        if "ref" in node and tag not in ("$object", "$ref"):
            self._refs[node["ref"]] = value
        return value

    def _part(self, rel: Any, path: str) -> Path:
        if not isinstance(rel, str) or rel not in self.files or rel == STATE:
            raise self.refuse(path, f"it refers to the file {rel!r}, which the manifest does not list")
        return self.directory / rel

    # inline tags
    def _float(self, node: dict, value: Any, path: str) -> float:
        if value not in ("nan", "inf", "-inf"):
            raise ValueError(f"{value!r} is not nan/inf/-inf")
        return float(value)

    def _tuple(self, node: dict, value: list, path: str) -> tuple:
        return tuple(self._items(value, path))

    def _set(self, node: dict, value: list, path: str) -> set:
        return set(self._items(value, path))

    def _frozenset(self, node: dict, value: list, path: str) -> frozenset:
        return frozenset(self._items(value, path))

    def _items(self, value: Any, path: str) -> list:
        if type(value) is not list:
            raise TypeError("not a list")
        return self.decode(value, path)

    def _dict(self, node: dict, value: list, path: str) -> dict:
        return {self.decode(k, f"{path} key"): self.decode(v, f"{path}[{i}]") for i, (k, v) in enumerate(value)}

    def _bytes(self, node: dict, value: str, path: str) -> bytes:
        return base64.b64decode(value, validate=True)

    def _scalar(self, node: dict, value: str, path: str) -> Any:
        dtype = np.dtype(value)
        raw = node["value"]
        if dtype.kind in "biuf":
            return dtype.type(self.decode(raw, path))
        if dtype.kind == "c":
            real, imag = (self.decode(v, path) for v in raw)
            return dtype.type(complex(real, imag))
        if dtype.kind in "Mm":
            return np.array(int(raw), np.int64).view(dtype)[()]
        if dtype.kind == "U":
            return dtype.type(str(raw))
        if dtype.kind == "S":
            return dtype.type(base64.b64decode(raw, validate=True))
        raise ValueError(f"a {dtype} scalar")

    def _dtype(self, node: dict, value: str, path: str) -> Any:
        dtype = np.dtype(value)
        return dtype.type if node.get("type") else dtype

    def _ref(self, node: dict, value: Any, path: str) -> Any:
        if value not in self._refs:
            raise ValueError(f"$ref {value!r} before the value it refers to")
        return self._refs[value]

    # parts
    def _array(self, node: dict, value: str, path: str) -> np.ndarray:
        return parts.read_array(self._part(value, path), self.mmap, bool(node.get("object")))

    def _sparse(self, node: dict, value: str, path: str) -> Any:
        arrays = {k: self.decode(node[k], f"{path}.{k}") for k in parts.SPARSE_PARTS.get(value, ())}
        return parts.sparse_from(value, bool(node.get("array")), node.get("shape"), arrays)

    def _frame(self, node: dict, value: str, path: str) -> Any:
        return parts.frame_from_parquet(self._part(value, path), node, lambda v, where: self._cell(v, path + where))

    def _series(self, node: dict, value: str, path: str) -> Any:
        series = self._frame(node, value, path)["values"]
        series.name = self._cell(node.get("name"), f"{path}.name")
        return series

    def _cell(self, node: Any, path: str) -> Any:
        if any(tag in item for item in _dicts(node) for tag in _PART_TAGS):
            raise self.refuse(path, "a DataFrame cell names a part or an object")
        return self.decode(node, path)

    def _lightgbm(self, node: dict, value: str, path: str) -> Any:
        return parts.read_booster(self._part(value, path), node)

    def _faiss(self, node: dict, value: str, path: str) -> Any:
        return parts.read_faiss(self._part(value, path), str(node.get("kind")), self.mmap)

    def _random_state(self, node: dict, value: Any, path: str) -> np.random.RandomState:
        return parts.random_state_from(self.decode(value, f"{path}.state"))

    def _generator(self, node: dict, value: Any, path: str) -> np.random.Generator:
        return parts.generator_from(self.decode(value, f"{path}.state"))

    def _object(self, node: dict, name: str, path: str) -> Any:
        if not registry.is_allowed(name):
            raise self.refuse(path, f"{name!r} is neither registered nor allow-listed")
        try:
            cls, adapter = registry.resolve(name)
        except (ImportError, AttributeError, TypeError) as error:
            raise self.refuse(path, f"{name} cannot be found in the installed packages ({error})") from error
        if adapter.build is not None:
            obj = adapter.build(cls, self.decode(node.get("state"), path))
            if "ref" in node:
                self._refs[node["ref"]] = obj
            return obj
        obj = registry.new_instance(cls)
        if "ref" in node:
            self._refs[node["ref"]] = obj  # before the state: the state may refer back to it
        registry.apply_state(obj, self._state(node.get("state"), path))
        return obj

    def _state(self, node: Any, path: str) -> Any:
        if type(node) is dict and not any(k.startswith("$") for k in node):
            return {k: self.decode(v, f"{path}.{k}") for k, v in node.items()}
        return self.decode(node, path)


def _dicts(node: Any):
    """Every dict node under `node` (JSON as parsed)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            yield item
            stack.extend(item.values())
