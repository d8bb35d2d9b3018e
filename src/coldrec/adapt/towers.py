"""What the contrastive trainer trains: a tower that embeds catalog items and query texts.

- `HeadTower`: a small head (residual MLP or linear projection) over frozen encoder vectors,
  computed once; the fast path on CPU.
- `TransformerTower`: the encoder's transformer itself, with LoRA adapters (`peft`) or all
  weights trainable; texts are tokenised per batch.

Both return L2-normalised rows, so dot products are cosines, as in the recommender.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class ResidualHead(nn.Module):
    """x + W2 gelu(W1 x): starts as the identity (W2 = 0), so training moves away from the
    pretrained space only as far as the shop's data pays for."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(self.dropout(F.gelu(self.up(x))))


class LinearHead(nn.Module):
    """W x, W starting as the identity."""

    def __init__(self, dim: int):
        super().__init__()
        self.projection = nn.Linear(dim, dim, bias=False)
        nn.init.eye_(self.projection.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x)


def make_head(kind: str, dim: int, hidden: int = 1024, dropout: float = 0.1) -> nn.Module:
    if kind == "residual":
        return ResidualHead(dim, hidden, dropout)
    if kind == "linear":
        return LinearHead(dim)
    raise ValueError(f"unknown head {kind!r}; choose 'residual' or 'linear'")


class Tower(nn.Module):
    """What the trainer needs of a tower: L2-normalised rows for items and for query texts."""

    def items(self, ids: torch.Tensor) -> torch.Tensor:
        """The rows of catalog items `ids`."""
        raise NotImplementedError

    def texts(self, index: torch.Tensor) -> torch.Tensor:
        """The rows of the query texts at `index`."""
        raise NotImplementedError

    def all_items(self) -> torch.Tensor:
        """Every catalog item's row, in catalog order, computed in eval mode."""
        raise NotImplementedError


class HeadTower(Tower):
    """A trainable head over fixed item and query-text vectors."""

    item_vectors: torch.Tensor  # buffers (register_buffer), typed for the checker
    text_vectors: torch.Tensor

    def __init__(self, head: nn.Module, item_vectors: np.ndarray, text_vectors: np.ndarray):
        super().__init__()
        self.head = head
        self.register_buffer("item_vectors", torch.tensor(np.asarray(item_vectors, np.float32)))
        dim = self.item_vectors.shape[1]
        self.register_buffer("text_vectors", torch.tensor(np.asarray(text_vectors, np.float32).reshape(-1, dim)))

    def items(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.item_vectors[ids]), dim=-1)

    def texts(self, index: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.text_vectors[index]), dim=-1)

    @torch.no_grad()
    def all_items(self) -> torch.Tensor:
        training = self.training
        self.eval()
        out = F.normalize(self.head(self.item_vectors), dim=-1)
        self.train(training)
        return out


class TransformerTower(Tower):
    """A Hugging Face encoder (mean pooling, as all-MiniLM-L6-v2) trained end to end or with LoRA."""

    def __init__(self, model_path: str | Path, item_texts: Sequence[str], query_texts: Sequence[str],
                 mode: str = "lora", lora_rank: int = 8, max_length: int = 64, device: str = "cpu"):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        from coldrec.encode.base import set_offline_env

        set_offline_env()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        model = AutoModel.from_pretrained(str(model_path), local_files_only=True)
        if mode == "lora":
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.05,
                                target_modules=["query", "key", "value", "dense"])
            model = get_peft_model(model, config)
        elif mode != "full":
            raise ValueError(f"unknown transformer mode {mode!r}; choose 'lora' or 'full'")
        self.mode = mode
        self.model = model.to(device)
        self.device = device
        self.max_length = max_length
        self.item_texts = list(item_texts)
        self.query_texts = list(query_texts)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda")):
            tokens = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled.float(), dim=-1)

    def items(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed([self.item_texts[i] for i in ids.tolist()])

    def texts(self, index: torch.Tensor) -> torch.Tensor:
        return self.embed([self.query_texts[i] for i in index.tolist()])

    @torch.no_grad()
    def all_items(self, batch_size: int = 128) -> torch.Tensor:
        training = self.training
        self.eval()
        # longest first keeps padding small; rows go back to catalog order
        order = np.argsort([-len(t) for t in self.item_texts], kind="stable")
        out = torch.empty(len(self.item_texts), self.model.config.hidden_size, device=self.device)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[torch.as_tensor(rows, device=self.device)] = self.embed([self.item_texts[i] for i in rows])
        self.train(training)
        return out

    def merged_model(self) -> nn.Module:
        """The transformer with LoRA weights folded in (itself in full mode)."""
        if self.mode == "lora":
            return self.model.merge_and_unload()
        return self.model
