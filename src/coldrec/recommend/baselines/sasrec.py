"""SASRec (Kang & McAuley 2018): causal self-attention over each shopper's item sequence.

Every position of a shopper's recent items (the last `max_length`) predicts the item that follows it; the
scores of a position are its hidden state times the item embedding table (tied weights). Training minimises
full-softmax cross-entropy over the whole catalog at every position that has an item (on catalogs of a few
thousand items this is cheap, and it is known to beat SASRec's original sampled binary loss).

Early stopping: a seeded sample of up to `validation_users` shoppers with two or more items keep their last
item out of training; after each epoch it is ranked against the full catalog (the input items removed), and
training stops after `patience` epochs without a better NDCG@10 (never before `min_epochs`), at `max_epochs`,
or once `max_seconds` have gone; the best epoch's weights are kept. `min_epochs` because on amazon14-office
the validation NDCG stalls for a few epochs once popularity is learnt (0.017 at epoch 2, lower until epoch 6)
before the transitions are (0.09 by epoch 29): patience alone stopped at epoch 5.

`text_init`: the item embeddings start from the encoder's item text vectors, reduced to `dim` by PCA and
scaled to the default initialisation's spread (the text initialisation of UniSRec and similar models).

Torch is imported only to fit and score. The weights are saved as numpy arrays; the torch module is rebuilt
from them on the first `score` after a load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from coldrec.data.catalog import ItemCatalog
from coldrec.data.interactions import InteractionLog
from coldrec.encode.shared import UsesEncoder, item_vectors
from coldrec.recommend.base import Recommender, UserContext

#: the spread of the default embedding initialisation (normal, as in BERT4Rec / RecBole's SASRec)
INIT_STD = 0.02
SCORE_BATCH = 256
NDCG_AT = 10

_THREADS_LOCK = threading.Lock()
_THREADS_USERS = 0
_THREADS_BEFORE = 0


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `count` (None: unchanged) while inside, the caller's number restored when the
    last concurrent user leaves."""
    global _THREADS_USERS, _THREADS_BEFORE
    if count is None:
        yield
        return
    import torch

    with _THREADS_LOCK:
        if _THREADS_USERS == 0:
            _THREADS_BEFORE = torch.get_num_threads()
            torch.set_num_threads(int(count))
        _THREADS_USERS += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_USERS -= 1
            if _THREADS_USERS == 0:
                torch.set_num_threads(_THREADS_BEFORE)


def _network(n_items: int, max_length: int, dim: int, blocks: int, heads: int, dropout: float) -> Any:
    """The torch module: item and position embeddings, `blocks` pre-norm causal transformer layers, a final
    LayerNorm; `forward(tokens)` (batch x width, left-padded with 0, item position p as token p + 1) gives the
    hidden states (batch x width x dim)."""
    import torch
    from torch import nn

    class SASRecNetwork(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.max_length = max_length
            self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)
            self.positions = nn.Embedding(max_length, dim)
            self.dropout = nn.Dropout(dropout)
            layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim, dropout=dropout,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, blocks, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
            nn.init.normal_(self.items.weight, std=INIT_STD)
            nn.init.normal_(self.positions.weight, std=INIT_STD)
            with torch.no_grad():
                self.items.weight[0].zero_()

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            width = tokens.shape[1]
            # left padding: the most recent item always sits at the last position, whatever the batch's width
            at = torch.arange(self.max_length - width, self.max_length, device=tokens.device)
            x = self.dropout(self.items(tokens) + self.positions(at)[None])
            causal = torch.ones(width, width, dtype=torch.bool, device=tokens.device).triu(1)
            pad = tokens == 0
            # a position sees no later position and no padding, but always itself (so no row is all masked)
            blocked = causal[None] | (pad[:, None, :] & ~torch.eye(width, dtype=torch.bool, device=tokens.device))
            blocked = blocked.repeat_interleave(heads, dim=0)
            return self.encoder(x, mask=blocked)

        def item_table(self) -> torch.Tensor:
            return self.items.weight[1:]

    return SASRecNetwork()


def _left_padded(sequences: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Tokens (item position + 1), each sequence's last `width` items right-aligned, 0 before them."""
    out = np.zeros((len(sequences), width), np.int64)
    for row, seq in enumerate(sequences):
        tail = seq[len(seq) - width:] if len(seq) > width else seq
        if len(tail):
            out[row, width - len(tail):] = np.asarray(tail, np.int64) + 1
    return out


def _trimmed(tokens: np.ndarray) -> np.ndarray:
    """`tokens` without the leading columns that are padding in every row (at least one column kept)."""
    filled = np.flatnonzero((tokens != 0).any(axis=0))
    return tokens[:, filled[0]:] if len(filled) else tokens[:, -1:]


class SASRecRecommender(UsesEncoder, Recommender):
    """Causal self-attention over the shopper's last `max_length` items; the next item by full softmax.

    A context without known items scores 0 everywhere (the evaluation's popularity tie-break then decides),
    as for the other behaviour-only baselines. Fitted: `weights_` (the module's state as float32 arrays),
    `epochs_` (epochs trained), `validation_ndcg_` (the best epoch's NDCG@10 on the held-out last items).
    """

    name = "sasrec"
    param_grid: Sequence[dict[str, Any]] = ({"text_init": False}, {"text_init": True})
    __transient__ = ("_net", "_encoder")
    _net: Any = None

    def __init__(
        self,
        max_length: int = 50,
        dim: int = 64,
        blocks: int = 2,
        heads: int = 2,
        dropout: float = 0.2,
        learning_rate: float = 1e-3,
        batch_size: int = 128,
        max_epochs: int = 40,
        patience: int = 3,
        min_epochs: int = 10,
        max_seconds: float = 300.0,
        validation_users: int = 2000,
        text_init: bool = False,
        random_state: int = 0,
        num_threads: int | None = 1,
        encoder=None,
    ):
        self.max_length = max_length
        self.dim = dim
        self.blocks = blocks
        self.heads = heads
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.min_epochs = min_epochs
        self.max_seconds = max_seconds
        self.validation_users = validation_users
        self.text_init = text_init
        self.random_state = random_state
        self.num_threads = num_threads
        self._encoder = encoder

    # ------------------------------------------------------------------ fit

    def _new_network(self) -> Any:
        return _network(self.fitted_items_, self.max_length, self.dim, self.blocks, self.heads, self.dropout)

    def _text_embeddings(self, catalog: ItemCatalog) -> np.ndarray:
        """Item text vectors reduced to `dim` (PCA) and scaled to the default initialisation's spread."""
        from sklearn.decomposition import PCA

        vectors = np.asarray(item_vectors(self.encoder, catalog.texts()), np.float32)
        components = min(self.dim, vectors.shape[0], vectors.shape[1])
        reduced = PCA(components, random_state=self.random_state).fit_transform(vectors)
        out = np.zeros((len(vectors), self.dim), np.float32)
        out[:, :components] = reduced
        spread = float(out[:, :components].std())
        return (out * (INIT_STD / spread if spread > 0 else 0.0)).astype(np.float32)

    def _fit(self, log: InteractionLog, catalog: ItemCatalog, profiles) -> None:
        import torch
        from tqdm.auto import tqdm

        ordered = log.sorted_by_time()
        by_user = np.argsort(ordered.user, kind="stable")  # each user's events, still in time order
        user = ordered.user[by_user]
        bounds = np.flatnonzero(np.diff(user)) + 1
        sequences = np.split(ordered.item[by_user].astype(np.int64), bounds) if len(user) else []

        rng = np.random.default_rng(self.random_state)
        eligible = np.flatnonzero([len(s) >= 2 for s in sequences])
        held = rng.choice(eligible, min(self.validation_users, len(eligible)), replace=False)
        held.sort()
        is_held = np.zeros(len(sequences), bool)
        is_held[held] = True
        training = [s[:-1] if is_held[u] else s for u, s in enumerate(sequences)]
        training = [s for s in training if len(s) >= 2]
        rows = _left_padded(training, self.max_length + 1)
        val_inputs = [sequences[u][:-1] for u in held]
        val_targets = np.array([sequences[u][-1] for u in held], np.int64)

        # seeded without touching the caller's torch RNG
        with _torch_threads(self.num_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            net = self._new_network()
            if self.text_init:
                with torch.no_grad():
                    net.items.weight[1:] = torch.from_numpy(self._text_embeddings(catalog))
            optimiser = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
            best_ndcg, best_state, best_epoch, stale, epoch = -1.0, self._state_arrays(net), 0, 0, 0
            began = time.perf_counter()
            out_of_time = False
            epochs = self.max_epochs if len(rows) else 0
            bar = tqdm(range(epochs), desc="sasrec", unit="epoch", disable=None, leave=False)
            for epoch in bar:  # noqa: B007 - the last epoch is read after the loop
                net.train()
                order = rng.permutation(len(rows))
                for start in range(0, len(rows), self.batch_size):
                    tokens = torch.from_numpy(_trimmed(rows[order[start:start + self.batch_size]]))
                    inputs, targets = tokens[:, :-1], tokens[:, 1:] - 1
                    hidden = net(inputs)
                    known = targets >= 0  # positions with a next item (the padding has none)
                    logits = hidden[known] @ net.item_table().T
                    loss = torch.nn.functional.cross_entropy(logits, targets[known])
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    if time.perf_counter() - began > self.max_seconds:
                        out_of_time = True
                        break
                # without validation users every epoch counts as better: the last one is kept
                ndcg = self._ndcg(net, val_inputs, val_targets) if len(val_targets) else np.nan
                if not len(val_targets) or ndcg > best_ndcg:
                    best_ndcg, best_state, best_epoch, stale = ndcg, self._state_arrays(net), epoch + 1, 0
                else:
                    stale += 1
                bar.set_postfix(ndcg=f"{ndcg:.4f}", best=f"{best_ndcg:.4f}")
                if out_of_time or (stale >= self.patience and epoch + 1 >= self.min_epochs):
                    break
            bar.close()
        self.epochs_ = epoch + 1 if epochs else 0
        self.best_epoch_ = best_epoch
        self.validation_ndcg_ = float(best_ndcg) if len(val_targets) and epochs else float("nan")
        self.weights_ = best_state
        self._net = None

    @staticmethod
    def _state_arrays(net: Any) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().astype(np.float32, copy=True) for k, v in net.state_dict().items()}

    def _ndcg(self, net: Any, inputs: list[np.ndarray], targets: np.ndarray) -> float:
        """Mean NDCG@10 of each target against the full catalog, the input's items removed."""
        gains = np.zeros(len(targets))
        for start in range(0, len(targets), SCORE_BATCH):
            chunk = inputs[start:start + SCORE_BATCH]
            scores = self._scores(net, chunk)
            for row, seq in enumerate(chunk):
                scores[row, seq] = -np.inf
            target = scores[np.arange(len(chunk)), targets[start:start + len(chunk)]]
            rank = (scores > target[:, None]).sum(axis=1)
            hit = np.isfinite(target) & (rank < NDCG_AT)
            gains[start:start + len(chunk)] = np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)
        return float(gains.mean())

    # ------------------------------------------------------------------ score

    def _scores(self, net: Any, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """The last position's scores (sequences x fitted items) for non-empty sequences of fitted positions."""
        import torch

        out = np.zeros((len(sequences), self.fitted_items_), np.float32)
        training = net.training
        net.eval()
        try:
            with torch.inference_mode():
                table = net.item_table()
                for start in range(0, len(sequences), SCORE_BATCH):
                    tokens = _trimmed(_left_padded(sequences[start:start + SCORE_BATCH], self.max_length))
                    hidden = net(torch.from_numpy(tokens))[:, -1]
                    out[start:start + len(tokens)] = (hidden @ table.T).numpy()
        finally:
            net.train(training)
        return out

    def network(self) -> Any:
        """The fitted torch module (built from `weights_` on first use, e.g. after a load)."""
        if self._net is None:
            import torch

            with torch.random.fork_rng(devices=[]):
                net = self._new_network()
            net.load_state_dict({k: torch.from_numpy(np.array(v, np.float32)) for k, v in self.weights_.items()})
            net.eval()
            self._net = net
        return self._net

    def score(self, contexts: Sequence[UserContext]) -> np.ndarray:
        sequences = [np.asarray(c.items, np.int64) for c in contexts]
        sequences = [s[(s >= 0) & (s < self.fitted_items_)] for s in sequences]
        filled = np.flatnonzero([len(s) > 0 for s in sequences])
        out = np.zeros((len(contexts), self.fitted_items_), np.float32)
        if len(filled):
            with _torch_threads(self.num_threads):
                out[filled] = self._scores(self.network(), [sequences[i] for i in filled])
        return out
