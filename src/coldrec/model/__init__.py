"""A model directory that is data, not code: a JSON manifest plus parts in their own formats.

    DIR/manifest.json        format, coldrec version, kind, params, fingerprint, created_at, modules, extra,
                             and the sha256 of every other file
    DIR/state.json           the object graph as JSON; tagged nodes point at the parts below
    DIR/arrays/NNNN-*.npy    numpy arrays (np.save, allow_pickle=False; loaded as copy-on-write maps)
    DIR/frames/NNNN-*.parquet  pandas DataFrames / Series
    DIR/lightgbm/NNNN-*.txt  LightGBM boosters as their text model
    DIR/faiss/NNNN-*.faiss   faiss indexes (faiss.write_index)

Nothing on the load path unpickles; only registered (`register_class`) or allow-listed classes are
restored, and a name is checked before anything is imported for it.
"""

from coldrec.model.directory import load_model, save_model, verify
from coldrec.model.fingerprint import data_fingerprint
from coldrec.model.manifest import FORMAT_VERSION, Manifest, ModelDirectoryError, read_manifest
from coldrec.model.registry import THIRD_PARTY, register_class

__all__ = [
    "FORMAT_VERSION",
    "THIRD_PARTY",
    "Manifest",
    "ModelDirectoryError",
    "data_fingerprint",
    "load_model",
    "read_manifest",
    "register_class",
    "save_model",
    "verify",
]
