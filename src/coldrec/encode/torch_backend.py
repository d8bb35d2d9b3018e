"""sentence-transformers (PyTorch) backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    BatchedEncoder,
    default_model_path,
    hash_files,
    make_fingerprint,
    read_st_config,
    set_offline_env,
)


class SentenceTransformerEncoder(BatchedEncoder):
    """A local sentence-transformers model; CUDA + bf16 autocast when available, else CPU.

    torch and sentence-transformers are imported on first use, not at construction.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str | None = None,
        max_seq_length: int | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        self.name = f"st:{self.model_path.name if model_path is not None else 'all-MiniLM-L6-v2'}"
        self._config = read_st_config(self.model_path)
        self.max_seq_length = int(max_seq_length or self._config["max_seq_length"])
        self._device = device
        self._model: Any = None
        self._fingerprint: str | None = None

    @property
    def device(self) -> str:
        if self._device is None:
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    @property
    def model(self) -> Any:
        if self._model is None:
            set_offline_env()
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(
                str(self.model_path), device=self.device, local_files_only=True
            )
            self._model.max_seq_length = self.max_seq_length
            self._model.eval()
        return self._model

    @property
    def dim(self) -> int:
        if self._model is None:
            return self._config["dim"]
        return int(self.model.get_embedding_dimension())

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = make_fingerprint(
                model=hash_files(self.model_path),
                backend="torch",
                max_seq_length=self.max_seq_length,
                pooling=self._config["pooling"],
                normalize=True,
                precision="bf16" if self.device.startswith("cuda") else "fp32",
            )
        return self._fingerprint

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        model = self.model
        use_bf16 = self.device.startswith("cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            emb = model.encode(
                texts,
                batch_size=len(texts),
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return emb.float().cpu().numpy()
