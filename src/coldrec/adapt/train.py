"""Contrastive training of a tower on query -> item pairs.

InfoNCE over in-batch negatives (the other rows' targets) plus hard negatives: items the
current tower puts nearest to the row's target, re-mined from the whole item index every
epoch. A query made of items is their recency-weighted mean (as the recommender pools a
shopper's history); a text query is embedded by the tower. Early stopping on Recall@k of
held-out pairs; the best epoch's weights are kept (epoch 0 = untouched, so a head that
does not help the held-out pairs is left as the identity).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from coldrec.adapt.pairs import NO_ITEM, TrainingPairs
from coldrec.adapt.towers import Tower


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 512
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.05
    hard_negatives: int = 2  # per row, sampled from the target's `hard_pool` nearest items
    hard_pool: int = 20
    patience: int = 2
    decay: float = 0.7  # recency weight of a history item per position, as in the recommender
    pairs_per_epoch: int | None = None  # a fresh random subset each epoch (slow towers)
    eval_pairs: int = 5000
    eval_k: int = 20
    seed: int = 0
    show_progress: bool | None = None
    threads: int | None = None  # torch intra-op threads while training (None: leave as is)
    # in-batch: subtract log q (negatives are drawn by popularity); catalog: add it as a prior
    popularity_correction: bool = False
    negatives: str = "in-batch"  # "in-batch" (+ hard), or "catalog": every item (small catalogs, head mode)


@dataclass
class TrainingReport:
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict] = field(default_factory=list)  # per epoch: loss, held-out recall


def resolve_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_tower(tower: Tower, pairs: TrainingPairs, held_out: TrainingPairs | None, config: TrainConfig,
                device: str = "cpu", epochs: int | None = None) -> TrainingReport:
    """Train `tower` in place; with `held_out`, stop early and restore the best epoch's weights."""
    with torch_threads(config.threads):
        return _train_tower(tower, pairs, held_out, config, device, epochs)


@contextmanager
def torch_threads(threads: int | None):
    """Torch's intra-op thread count set for a block, then restored."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train_tower(tower: Tower, pairs: TrainingPairs, held_out: TrainingPairs | None, config: TrainConfig,
                 device: str, epochs: int | None) -> TrainingReport:
    began = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    tower.to(device).train()
    parameters = [p for p in tower.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    n_epochs = config.epochs if epochs is None else epochs
    if held_out is not None and len(held_out) > config.eval_pairs:
        held_out = held_out.select(np.sort(rng.choice(len(held_out), config.eval_pairs, replace=False)))
    history: list[dict] = []
    best_recall, best_epoch, best_state = -1.0, 0, None
    if held_out is not None and len(held_out):
        best_recall = held_out_recall(tower, held_out, config, device)
        best_state = _trainable_state(tower)
        history.append({"epoch": 0, "loss": float("nan"), "held_out_recall": best_recall})
    epoch_bar = _progress(range(1, n_epochs + 1), config.show_progress, n_epochs)
    epochs_run = 0
    for epoch in epoch_bar:
        neighbours = mine_hard_negatives(tower, config.hard_pool)
        log_q = target_log_frequency(pairs, len(neighbours)) if config.popularity_correction else None
        rows = rng.permutation(len(pairs))
        if config.pairs_per_epoch:
            rows = rows[: config.pairs_per_epoch]
        losses = []
        for start in range(0, len(rows), config.batch_size):
            batch = pairs.select(rows[start : start + config.batch_size])
            if len(batch) < 2:
                continue
            if config.negatives == "catalog":
                loss = catalog_softmax_loss(tower, batch, len(neighbours), config, device, log_q)
            else:
                loss = contrastive_loss(tower, batch, neighbours, rng, config, device, log_q)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        epochs_run = epoch
        record = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan")}
        if held_out is not None and len(held_out):
            record["held_out_recall"] = held_out_recall(tower, held_out, config, device)
            if record["held_out_recall"] > best_recall:
                best_recall, best_epoch, best_state = record["held_out_recall"], epoch, _trainable_state(tower)
        else:
            best_epoch = epoch
        history.append(record)
        if hasattr(epoch_bar, "set_postfix"):
            epoch_bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
        if held_out is not None and epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        tower.load_state_dict(best_state, strict=False)
    tower.eval()
    return TrainingReport(best_epoch, epochs_run, time.perf_counter() - began, history)


def query_embeddings(tower: Tower, batch: TrainingPairs, item_rows: torch.Tensor, item_embeddings: torch.Tensor,
                     decay: float, device: str) -> torch.Tensor:
    """Rows of item queries: recency-weighted mean of their items; rows of text queries: the text."""
    history = torch.as_tensor(batch.history, device=device)
    present = history != NO_ITEM
    age = torch.arange(history.shape[1] - 1, -1, -1, device=device, dtype=torch.float32)
    weights = (decay**age).expand_as(history) * present
    embedded = item_embeddings[item_rows[history.clamp(min=0)]]  # (b, L, d)
    pooled = F.normalize((weights.unsqueeze(-1) * embedded).sum(1), dim=-1)
    is_text = torch.as_tensor(batch.text >= 0, device=device)
    if bool(is_text.any()):
        text_rows = torch.nonzero(is_text).squeeze(1)
        text_vectors = tower.texts(torch.as_tensor(batch.text[batch.text >= 0], device=device))
        pooled = pooled.index_put((text_rows,), text_vectors)
    return pooled


def target_log_frequency(pairs: TrainingPairs, n_items: int) -> np.ndarray:
    """log of each item's share of the targets (items never a target count as half a pair)."""
    counts = np.bincount(pairs.target, minlength=n_items).astype(np.float64)
    return np.log(np.maximum(counts, 0.5) / max(len(pairs), 1)).astype(np.float32)


def contrastive_loss(tower: Tower, batch: TrainingPairs, neighbours: np.ndarray, rng: np.random.Generator,
                     config: TrainConfig, device: str, log_q: np.ndarray | None = None) -> torch.Tensor:
    """InfoNCE of each query against its target, the batch's other targets and mined hard negatives.

    With `log_q`, each candidate's logit is lowered by the log of how often it is a target
    (sampled-softmax correction): in-batch negatives are drawn by popularity, and without
    it training learns to push popular items away, which full-catalog ranking pays for.
    """
    n = len(batch)
    hard = neighbours[batch.target[:, None], rng.integers(neighbours.shape[1], size=(n, config.hard_negatives))]
    candidates = np.concatenate([batch.target, hard.ravel()])
    # every item of the batch is embedded once (one transformer pass per batch)
    wanted = np.concatenate([batch.history[batch.history != NO_ITEM], candidates])
    unique = np.unique(wanted)
    item_rows = torch.full((int(unique.max()) + 1,), -1, dtype=torch.long, device=device)
    item_rows[torch.as_tensor(unique, device=device)] = torch.arange(len(unique), device=device)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        embeddings = tower.items(torch.as_tensor(unique, device=device))
        queries = query_embeddings(tower, batch, item_rows, embeddings, config.decay, device)
        logits = queries.float() @ embeddings[item_rows[torch.as_tensor(candidates, device=device)]].float().T
    logits = logits / config.temperature
    if log_q is not None:
        logits = logits - torch.as_tensor(log_q[candidates], device=device)
    # no negative is this row's target (another row's target, a mined neighbour) or one of the
    # query's own items: those are left out of the ranking the model is judged on
    same = candidates[None, :] == batch.target[:, None]
    same |= (candidates[None, :, None] == batch.history[:, None, :]).any(axis=2)
    same[np.arange(n), np.arange(n)] = False
    logits = logits.masked_fill(torch.as_tensor(same, device=device), float("-inf"))
    return F.cross_entropy(logits, torch.arange(n, device=device))


def catalog_softmax_loss(tower: Tower, batch: TrainingPairs, n_items: int, config: TrainConfig,
                         device: str, log_q: np.ndarray | None = None) -> torch.Tensor:
    """Softmax over the whole item index (the query's own items left out): the ranking the
    model is judged on; affordable when items are cheap to embed (head mode).

    With `log_q`, how often each item is a target enters as a fixed prior (logit + log q), so
    the similarity itself need not learn popularity: it models how much more likely an item
    is after the query than overall, which carries over to items no one has bought yet.
    """
    items = tower.items(torch.arange(n_items, device=device))
    queries = query_embeddings(tower, batch, torch.arange(n_items, device=device), items, config.decay, device)
    logits = (queries @ items.T) / config.temperature
    if log_q is not None:
        logits = logits + torch.as_tensor(log_q, device=device)
    history = torch.as_tensor(batch.history, device=device)
    rows = torch.arange(len(batch), device=device).unsqueeze(1).expand_as(history)
    present = history != NO_ITEM
    logits = logits.index_put((rows[present], history[present]), torch.tensor(float("-inf"), device=device))
    return F.cross_entropy(logits, torch.as_tensor(batch.target, device=device))


@torch.no_grad()
def mine_hard_negatives(tower: Tower, pool: int, chunk: int = 2048) -> np.ndarray:
    """For every item, its `pool` nearest other items under the current tower."""
    vectors = tower.all_items().float()
    pool = min(pool, len(vectors) - 1)
    out = np.empty((len(vectors), pool), np.int64)
    for start in range(0, len(vectors), chunk):
        similarity = vectors[start : start + chunk] @ vectors.T
        rows = torch.arange(similarity.shape[0])
        similarity[rows, rows + start] = float("-inf")
        out[start : start + chunk] = torch.topk(similarity, pool, dim=1).indices.cpu().numpy()
    return out


@torch.no_grad()
def held_out_recall(tower: Tower, pairs: TrainingPairs, config: TrainConfig, device: str) -> float:
    """Share of held-out pairs whose target is in the top `eval_k` of the whole item index
    (the query's own items left out)."""
    training = tower.training
    tower.eval()
    items = tower.all_items().float()
    hits = []
    for start in range(0, len(pairs), 1024):
        batch = pairs.select(np.arange(start, min(start + 1024, len(pairs))))
        item_rows = torch.arange(len(items), device=device)
        queries = query_embeddings(tower, batch, item_rows, items, config.decay, device).float()
        scores = queries @ items.T
        history = torch.as_tensor(batch.history, device=device)
        rows = torch.arange(len(batch), device=device).unsqueeze(1).expand_as(history)
        scores[rows[history != NO_ITEM], history[history != NO_ITEM]] = float("-inf")
        target = torch.as_tensor(batch.target, device=device)
        target_score = scores[torch.arange(len(batch), device=device), target]
        rank = (scores > target_score.unsqueeze(1)).sum(1)
        hits.append((rank < config.eval_k).float().cpu().numpy())
    tower.train(training)
    return float(np.concatenate(hits).mean())


def _trainable_state(tower: Tower) -> dict[str, torch.Tensor]:
    trainable = {name for name, p in tower.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in tower.state_dict().items() if k in trainable}


def _progress(iterable, show: bool | None, total: int):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc="adapt", unit="epoch", disable=show is False, leave=False)
