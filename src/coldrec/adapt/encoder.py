"""Adapted encoders: a `TextEncoder` whose fingerprint is the base's plus a hash of the new
weights, so cached vectors of the pretrained model and of every adapted model never mix."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from coldrec.adapt.towers import make_head
from coldrec.encode.base import (
    BatchedEncoder,
    TextEncoder,
    as_text_list,
    l2_normalize,
    make_fingerprint,
)


def weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """16-hex-digit hash of named weights (names, shapes and values), e.g. a `state_dict()`."""
    h = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(tensors.items()):
        h.update(f"{name}\0{tuple(tensor.shape)}\0".encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


class HeadEncoder(TextEncoder):
    """The base encoder's vectors through a trained head, renormalised."""

    def __init__(self, base: TextEncoder, head: nn.Module, head_config: dict[str, Any]):
        self.base = base
        self.head = head.cpu().eval()
        self.head_config = dict(head_config)
        self.name = f"{base.name}+head"
        self._fingerprint = make_fingerprint(
            base=base.fingerprint, adapter="head", weights=weights_digest(self.head.state_dict())
        )

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(
        self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        vectors = np.asarray(self.base.encode(as_text_list(texts), batch_size, show_progress), np.float32)
        return self.transform(vectors)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """The head applied to vectors already made by the base encoder."""
        with torch.no_grad():
            out = self.head(torch.as_tensor(np.asarray(vectors, np.float32))).numpy()
        return l2_normalize(out)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.head.state_dict(), directory / "head.pt")
        meta = {"head": self.head_config, "base_fingerprint": self.base.fingerprint, "fingerprint": self.fingerprint}
        (directory / "adapter.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, base: TextEncoder) -> HeadEncoder:
        directory = Path(directory)
        meta = json.loads((directory / "adapter.json").read_text())
        if meta["base_fingerprint"] != base.fingerprint:
            raise ValueError(
                f"adapter in {directory} was trained on encoder {meta['base_fingerprint']}, not {base.fingerprint}"
            )
        head = make_head(**meta["head"])
        head.load_state_dict(torch.load(directory / "head.pt", weights_only=True))
        return cls(base, head, meta["head"])


class TransformerEncoder(BatchedEncoder):
    """A fine-tuned (LoRA merged, or fully trained) transformer with mean pooling."""

    default_batch_size = 64

    def __init__(self, model: nn.Module, tokenizer: Any, base_fingerprint: str, mode: str, weights: str,
                 max_length: int = 64, device: str = "cpu"):
        self.model: Any = model.to(device).eval()  # a transformers model: `config`, keyword call
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.device = device
        self.name = f"adapted-{mode}"
        self._fingerprint = make_fingerprint(
            base=base_fingerprint, adapter=mode, weights=weights, max_length=max_length
        )

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        bf16 = self.device.startswith("cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            tokens = self.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return ((tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).cpu().numpy()

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        meta = {"fingerprint": self.fingerprint, "max_length": self.max_length}
        (directory / "adapter.json").write_text(json.dumps(meta))
        return directory
