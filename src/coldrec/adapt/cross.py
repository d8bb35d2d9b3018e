"""A cross-encoder fine-tuned on the shop's judged (query, product) pairs.

A bi-encoder compares a query vector with a product vector made without seeing the query;
a cross-encoder reads both texts together, so "cordless drill *battery*" can tell the
battery from the drill. `CrossEncoderScorer` starts from the pretrained sentence encoder's
weights (all-MiniLM-L6-v2 by default, offline) with a fresh one-output head and learns to
predict the graded relevance of a pair (mean squared error, centred labels). It is slow
next to the other signals (a transformer pass per pair), so it is for re-ranking a short
list: a query's judged products, or the top of a first-stage ranking.

Training runs on CUDA in bf16 where present, else on the CPU (one epoch over Home Depot's
37k tuning-half pairs: about 16 minutes on 2 cores).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coldrec.encode.base import default_model_path, set_offline_env


@dataclass(frozen=True)
class CrossEncoderConfig:
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_share: float = 0.1  # of the steps, linear warm-up then linear decay to 0
    max_length: int = 48  # query + title tokens; Home Depot pairs rarely need more
    seed: int = 0
    device: str | None = None  # None: CUDA when present, else CPU


class CrossEncoderScorer:
    """``fit(queries, texts, relevance)`` then ``predict(queries, texts)``: one score a pair, higher is more
    relevant."""

    def __init__(self, model_path: str | Path | None = None, config: CrossEncoderConfig | None = None) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.config = config or CrossEncoderConfig()
        self._model: Any = None  # transformers' sequence classifier and its tokenizer, once fitted or loaded
        self._tokenizer: Any = None
        self.label_offset_ = 0.0
        self.training_: dict = {}

    @property
    def device(self) -> str:
        from coldrec.adapt.train import resolve_device

        return resolve_device(self.config.device)

    def _load(self, path: Path) -> None:
        set_offline_env()
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity, bars_on = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # a fresh head is expected to be "newly initialised"
        hf_logging.disable_progress_bar()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(path))
            self._model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1).to(self.device)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars_on:
                hf_logging.enable_progress_bar()

    def _batch(self, queries: Sequence[str], texts: Sequence[str]):
        encoded = self._tokenizer(list(queries), list(texts), truncation=True, max_length=self.config.max_length,
                                  padding=True, return_tensors="pt")
        return {name: tensor.to(self.device) for name, tensor in encoded.items()}

    def fit(self, queries: Sequence[str], texts: Sequence[str], relevance: Sequence[float] | np.ndarray,
            on_progress: Callable[[int, int, float], None] | None = None) -> CrossEncoderScorer:
        """Train on pairs (``relevance`` any graded scale); ``on_progress(step, steps, loss)`` every 50 steps."""
        import torch

        queries, texts = [str(q) for q in queries], [str(t) for t in texts]
        labels = np.asarray(relevance, np.float32)
        if not (len(queries) == len(texts) == len(labels)):
            raise ValueError(
                f"queries, texts and relevance differ in length: {len(queries)}, {len(texts)}, {len(labels)}"
            )
        if not len(labels):
            raise ValueError("no training pairs")
        if not np.isfinite(labels).all():
            bad = int(np.flatnonzero(~np.isfinite(labels))[0])
            raise ValueError(f"pair {bad} ({queries[bad]!r}): relevance is not a finite number")
        config = self.config
        torch.manual_seed(config.seed)
        self._load(self.model_path or default_model_path())
        self.label_offset_ = float(labels.mean())
        targets = labels - self.label_offset_
        rng = np.random.default_rng(config.seed)
        steps = max(1, int(np.ceil(config.epochs * len(labels) / config.batch_size)))
        order = np.concatenate([rng.permutation(len(labels)) for _ in range(int(np.ceil(config.epochs)) + 1)])
        model = self._model
        optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
        warmup = max(1, int(config.warmup_share * steps))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / steps))
        on_cuda = self.device.startswith("cuda")
        model.train()
        began, losses = time.perf_counter(), []
        for step in range(steps):
            rows = order[step * config.batch_size : (step + 1) * config.batch_size]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):
                out = model(**self._batch([queries[r] for r in rows], [texts[r] for r in rows])).logits.squeeze(-1)
            loss = torch.nn.functional.mse_loss(out.float(), torch.from_numpy(targets[rows]).to(out.device))
            loss.backward()
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            losses.append(float(loss.detach()))
            if on_progress and (step % 50 == 0 or step == steps - 1):
                on_progress(step + 1, steps, float(np.mean(losses[-50:])))
        model.eval()
        self.training_ = {"pairs": len(labels), "steps": steps, "seconds": time.perf_counter() - began,
                          "first_loss": losses[0], "last_loss": float(np.mean(losses[-50:])), "device": self.device}
        return self

    def predict(self, queries: Sequence[str], texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """Scores of the pairs (``queries[i]``, ``texts[i]``), float64; pairs are batched by length."""
        import torch

        if self._model is None:
            raise RuntimeError("CrossEncoderScorer is not fitted: call fit() or load() first")
        queries, texts = [str(q) for q in queries], [str(t) for t in texts]
        if len(queries) != len(texts):
            raise ValueError(f"{len(queries)} queries but {len(texts)} texts")
        out = np.zeros(len(queries), np.float64)
        lengths = [len(q) + len(t) for q, t in zip(queries, texts, strict=True)]
        by_length = np.argsort(lengths, kind="stable")  # less padding
        bf16 = self.device.startswith("cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, len(by_length), batch_size):
                rows = by_length[start : start + batch_size]
                logits = self._model(**self._batch([queries[r] for r in rows], [texts[r] for r in rows])).logits
                out[rows] = logits.squeeze(-1).float().cpu().numpy()
        return out + self.label_offset_

    def save(self, path: str | Path) -> Path:
        if self._model is None:
            raise RuntimeError("nothing to save: the scorer is not fitted")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._model.save_pretrained(str(path))
        self._tokenizer.save_pretrained(str(path))
        (path / "coldrec_cross.json").write_text(json.dumps(
            {"config": asdict(self.config), "label_offset": self.label_offset_, "training": self.training_}, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> CrossEncoderScorer:
        path = Path(path)
        meta = json.loads((path / "coldrec_cross.json").read_text())
        config = CrossEncoderConfig(**{**meta["config"], "device": device})
        scorer = cls(path, config)
        scorer._load(path)
        scorer._model.eval()
        scorer.label_offset_ = float(meta["label_offset"])
        scorer.training_ = meta.get("training", {})
        return scorer


__all__ = ["CrossEncoderConfig", "CrossEncoderScorer"]
