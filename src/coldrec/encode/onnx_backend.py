"""ONNX Runtime backend: the transformer exported once from torch, then run without torch."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    BatchedEncoder,
    default_model_path,
    hash_files,
    make_fingerprint,
    read_st_config,
)
from .env import cpu_count, default_cache_dir

ONNX_FILE = "model.onnx"
#: "0": ONNX Runtime's idle threads sleep rather than spin (`coldrec serve` sets it; batch jobs keep spinning)
SPIN_ENV = "COLDREC_ONNX_SPIN"
#: ONNX Runtime's threads per encode (default: every core)
THREADS_ENV = "COLDREC_ONNX_THREADS"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxEncoder(BatchedEncoder):
    """Same model as `SentenceTransformerEncoder`, run by onnxruntime on CPU.

    The first construction exports ``model_path`` to ``cache_dir/<model hash>/model.onnx``
    (needs torch); later ones load that file with only onnxruntime, tokenizers and numpy.
    """

    #: Number of exports done in this process (lets tests check the cache is used).
    exports = 0
    # small batches pad less and stay in cache: measured fastest on 2 cores (16 vs 64: +15%)
    default_batch_size = 16

    def __init__(
        self,
        model_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        max_seq_length: int | None = None,
        threads: int | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        self.name = f"onnx:{self.model_path.name if model_path is not None else 'all-MiniLM-L6-v2'}"
        self._config = read_st_config(self.model_path)
        self.max_seq_length = int(max_seq_length or self._config["max_seq_length"])
        self.pooling: str = self._config["pooling"]
        self.source_hash = hash_files(self.model_path)
        cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
        self.onnx_path = cache_dir / self.source_hash / ONNX_FILE
        self.exported = False
        if not self.onnx_path.is_file():
            export_onnx(self.model_path, self.onnx_path)
            self.exported = True
            OnnxEncoder.exports += 1

        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or int(os.environ.get(THREADS_ENV) or 0) or cpu_count()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if os.environ.get(SPIN_ENV) == "0":
            # idle worker threads sleep instead of spinning: a server's bulk encodes then leave the cores to its
            # requests (2 threads, a 1,000-item add under read load: 7.3 s -> 6.0 s; a query encode 1.6 -> 2.3 ms)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(self.onnx_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self.session.get_inputs()}

        self.tokenizer = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
        # tokenizer.json may ship fixed-length padding/truncation; use the model's settings.
        pad = json.loads((self.model_path / "tokenizer.json").read_text()).get("padding") or {}
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.tokenizer.enable_padding(
            pad_id=pad.get("pad_id", 0), pad_token=pad.get("pad_token", "[PAD]")
        )
        self._fingerprint = make_fingerprint(
            model=self.source_hash,
            backend="onnx",
            max_seq_length=self.max_seq_length,
            pooling=self.pooling,
            normalize=True,
        )

    @property
    def dim(self) -> int:
        return int(self._config["dim"])

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encs = self.tokenizer.encode_batch(texts)
        feed = {
            "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
        }
        feed = {k: v for k, v in feed.items() if k in self._input_names}
        hidden = self.session.run(None, feed)[0]
        return pool(hidden, feed["attention_mask"], self.pooling)


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Sentence vectors from token states (batch, seq, dim) and the attention mask."""
    if mode == "cls":
        return hidden[:, 0]
    m = mask[:, :, None].astype(hidden.dtype)
    if mode == "max":
        return np.where(m > 0, hidden, -1e9).max(axis=1)
    summed = np.einsum("bsd,bs->bd", hidden, mask.astype(hidden.dtype))
    return summed / np.maximum(m.sum(axis=1), 1e-9)


def export_onnx(model_dir: Path, out_path: Path, opset: int = 17) -> Path:
    """Export the HF transformer in ``model_dir`` (token states output) to ``out_path``.

    Uses the TorchScript exporter (the dynamo one needs ``onnxscript``). The attention
    mask is built here rather than by transformers' mask utilities, whose Python-side
    shape checks get frozen into the trace. The result is checked against torch on a
    shape different from the trace shape before it is moved into place.
    """
    import torch
    from transformers import AutoModel

    from .base import set_offline_env

    set_offline_env()
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class TokenStates(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            positions = torch.cumsum(torch.ones_like(input_ids), dim=1) - 1
            h = self.m.embeddings(
                input_ids=input_ids, token_type_ids=token_type_ids, position_ids=positions
            )
            additive = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
            return self.m.encoder(h, attention_mask=additive).last_hidden_state

    # eval() on the wrapper too: export restores the wrapper's training flag afterwards,
    # which would otherwise switch dropout on in the wrapped model.
    wrapper = TokenStates(model).eval()
    ids = torch.randint(1000, 2000, (2, 8))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (ids, mask, torch.zeros_like(ids)),
                tmp,
                dynamo=False,
                input_names=list(_INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes={k: {0: "batch", 1: "seq"} for k in (*_INPUTS, "last_hidden_state")},
                opset_version=opset,
            )
        _check_export(tmp, model)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_path


def _check_export(onnx_file: str, model: Any) -> None:
    import onnxruntime as ort
    import torch

    ids = torch.randint(1000, 5000, (3, 13))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    types = torch.zeros_like(ids)
    sess = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()})[0]
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state.numpy()
    err = float(np.abs(got - ref)[mask.numpy().astype(bool)].max())
    if not err < 1e-3:
        raise RuntimeError(f"ONNX export does not match torch (max abs diff {err:.3g})")
