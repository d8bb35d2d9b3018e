"""A catalog's vectors computed partition by partition, on the current executor (`coldrec.parallel`): in this
process, or as Ray tasks under `coldrec build --ray`. Each partition is encoded by the same call either way, so
the vectors are the same; a Ray worker loads the encoder by its name (`coldrec.encode.named`), once per process.
The result is remembered as this process's `item_vectors` of the catalog, so every later fit uses it."""

from __future__ import annotations

import numpy as np

from coldrec.parallel import InProcess, current_executor, partitions

from .shared import normalise, remember_item_vectors

#: texts per partition (a Ray task each): a catalog up to this size is one encode call, as without partitions
PARTITION_TEXTS = 50_000


def encode_catalog(encoder, texts: list[str], partition_texts: int = PARTITION_TEXTS) -> np.ndarray:
    """Unit-length vectors of `texts` (a catalog's), remembered as `item_vectors(encoder, texts)`."""
    executor = current_executor()
    if isinstance(executor, InProcess):
        shared = encoder
    else:
        from .named import encoder_name

        shared = encoder_name(encoder)
        if shared is None:
            raise ValueError(f"{executor.name} workers load the encoder by name, and this one has none: use one "
                             "of coldrec.encode.named.ENCODER_NAMES")
    parts = [texts[part] for part in partitions(len(texts), partition_texts)]
    encoded = executor.map(encode_partition, parts, shared, description="encode the catalog")
    vectors = np.concatenate(encoded) if encoded else np.zeros((0, 0), np.float32)
    return remember_item_vectors(encoder, texts, vectors)


def encode_partition(texts: list[str], encoder) -> np.ndarray:
    """One partition's unit-length vectors; `encoder`: an encoder, or the name of one (loaded here)."""
    if isinstance(encoder, str):
        from .named import load_named_encoder

        encoder = load_named_encoder(encoder)
    return normalise(np.asarray(encoder.encode(texts, show_progress=False), np.float32))
