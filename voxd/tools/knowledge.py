"""search_knowledge_base: BM25 (bm25s, Snowball stems) over a folder of Markdown and
text files, blended with sentence embeddings when the model package is installed.

Files are split at headings and paragraphs into passages of about ``chunk_words``
words. The index is built off the event loop at agent load and rebuilt when a file
in the folder is added, removed or changed (checked at most every few seconds).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from voxd.config.tools import KnowledgeConfig
from voxd.tools.registry import Tool, ToolContext, ToolError

log = logging.getLogger(__name__)

SUFFIXES = (".md", ".markdown", ".txt", ".rst")
MAX_FILE_BYTES = 2 * 1024 * 1024
CHECK_EVERY_S = 2.0
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")

try:
    import Stemmer

    _STEMMER: Any = Stemmer.Stemmer("english")
except ImportError:  # PyStemmer is a dependency; keep working without it
    _STEMMER = None


@dataclass(frozen=True)
class Passage:
    text: str
    source: str  # file path relative to the folder
    heading: str


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) in file order."""
    out: list[tuple[str, list[str]]] = [("", [])]
    para: list[str] = []

    def flush() -> None:
        if para:
            out[-1][1].append(" ".join(para))
            para.clear()

    for line in text.splitlines():
        m = _HEADING.match(line)
        if m:
            flush()
            out.append((m.group(2), []))
        elif not line.strip():
            flush()
        else:
            para.append(line.strip())
    flush()
    return [s for s in out if s[1]]


def chunk(text: str, source: str, words: int = 120, overlap: int = 30) -> list[Passage]:
    passages: list[Passage] = []
    for heading, paras in _sections(text):
        buf: list[str] = []
        for para in paras:
            toks = para.split()
            if buf and len(buf) + len(toks) > words:
                passages.append(Passage(" ".join(buf), source, heading))
                buf = buf[-overlap:] if overlap else []
            buf.extend(toks)
            while len(buf) > words * 2:  # one very long paragraph
                passages.append(Passage(" ".join(buf[:words]), source, heading))
                buf = buf[words - overlap:]
        if buf:
            passages.append(Passage(" ".join(buf), source, heading))
    return passages


def _tokens(texts: list[str]) -> list[list[str]]:
    out: list[list[str]] = bm25s.tokenize(texts, stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False)
    return out


class KnowledgeBase:
    """One folder's passages and index. ``search`` is synchronous and CPU-bound: call it
    through ``asearch`` (a worker thread) from coroutines."""

    def __init__(self, folder: Path, cfg: KnowledgeConfig, embedder: Any = None) -> None:
        """``embedder`` has ``embed(texts) -> unit vectors``, or is a function returning one
        (or None), called in the indexing thread so a model loads off the event loop."""
        self.folder = folder
        self.cfg = cfg
        self._embedder_src = embedder
        self.embedder: Any = None
        self._vector_cache: dict[str, np.ndarray] = {}  # passage text -> vector, kept across re-indexing
        self.passages: list[Passage] = []
        self._bm25: bm25s.BM25 | None = None
        self._vectors: np.ndarray | None = None
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._checked = 0.0
        self._lock = asyncio.Lock()

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        if not self.folder.is_dir():
            return ()
        files = []
        for p in sorted(self.folder.rglob("*")):
            if p.suffix.lower() in SUFFIXES and p.is_file():
                st = p.stat()
                files.append((str(p.relative_to(self.folder)), st.st_mtime_ns, st.st_size))
        return tuple(files)

    def build(self) -> None:
        sig = self.signature()
        passages: list[Passage] = []
        for rel, _, size in sig:
            if size > MAX_FILE_BYTES:
                log.warning("knowledge base: skipping %s (larger than %d bytes)", rel, MAX_FILE_BYTES)
                continue
            text = (self.folder / rel).read_text(encoding="utf-8", errors="replace")
            passages += chunk(text, rel, self.cfg.chunk_words, self.cfg.overlap_words)
        bm25 = None
        vectors = None
        if passages:
            bm25 = bm25s.BM25()
            bm25.index(_tokens([f"{p.heading} {p.text}" for p in passages]), show_progress=False)
            if self.cfg.embeddings:
                vectors = self._embed_passages(passages)
        self.passages, self._bm25, self._vectors, self._signature = passages, bm25, vectors, sig
        self._checked = time.monotonic()
        log.info("knowledge base %s: %d files, %d passages%s", self.folder, len(sig), len(passages),
                 ", with embeddings" if vectors is not None else "")

    def _embed_passages(self, passages: list[Passage]) -> np.ndarray | None:
        src = self._embedder_src
        if self.embedder is None and src is not None:
            self.embedder = src if hasattr(src, "embed") else src()
        if self.embedder is None:
            return None
        texts = [f"{p.heading}. {p.text}" for p in passages]
        todo = sorted({t for t in texts if t not in self._vector_cache})
        if todo:
            for t, v in zip(todo, self.embedder.embed(todo), strict=True):
                self._vector_cache[t] = v
        self._vector_cache = {t: self._vector_cache[t] for t in texts}
        return np.stack([self._vector_cache[t] for t in texts])

    def stale(self) -> bool:
        return self._signature is None or self.signature() != self._signature

    async def ensure(self) -> None:
        """Index at first use; re-index when the folder changed."""
        if self._signature is not None and time.monotonic() - self._checked < CHECK_EVERY_S:
            return
        async with self._lock:
            if self._signature is not None and time.monotonic() - self._checked < CHECK_EVERY_S:
                return
            if await asyncio.to_thread(self.stale):
                await asyncio.to_thread(self.build)
            self._checked = time.monotonic()

    def search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        if self._bm25 is None or not self.passages:
            return []
        q = _tokens([query])[0]
        scores = np.asarray(self._bm25.get_scores(q), dtype=np.float32) if q else np.zeros(len(self.passages), np.float32)
        top = float(scores.max()) if len(scores) else 0.0
        lexical = scores / top if top > 0 else scores
        if self._vectors is not None and self.embedder is not None:
            qv = self.embedder.embed([query])[0]
            semantic = np.clip(self._vectors @ qv, 0.0, 1.0)
            combined = 0.5 * lexical + 0.5 * semantic
        else:
            combined = lexical
        order = np.argsort(-combined, kind="stable")[:k]
        return [(self.passages[i], float(combined[i])) for i in order if combined[i] > 0]

    async def asearch(self, query: str, k: int) -> list[tuple[Passage, float]]:
        await self.ensure()
        return await asyncio.to_thread(self.search, query, k)


class KnowledgeBases:
    """The indexes of every agent's folder, shared by the agents that name the same one."""

    def __init__(self, cfg: KnowledgeConfig, base_dir: Path, embedder: Any = None) -> None:
        self.cfg = cfg
        self.base_dir = base_dir
        self.embedder = embedder
        self._kbs: dict[Path, KnowledgeBase] = {}

    def folder(self, options: dict[str, Any]) -> Path | None:
        """The agent's folder, or None; ToolError when it lies outside the allowed roots
        (an agent file must not turn the daemon's disk into a knowledge base)."""
        raw = options.get("path") or options.get("folder")
        if not raw:
            return None
        p = Path(str(raw)).expanduser()
        folder = (p if p.is_absolute() else self.base_dir / p).resolve()
        roots = [Path(r).expanduser().resolve() for r in self.cfg.roots] or [self.base_dir.resolve()]
        if not any(folder.is_relative_to(r) for r in roots):
            raise ToolError(f"knowledge base folder {raw!r} is outside tools.knowledge.roots")
        return folder

    def get(self, folder: Path) -> KnowledgeBase:
        kb = self._kbs.get(folder)
        if kb is None:
            kb = self._kbs[folder] = KnowledgeBase(folder, self.cfg, self.embedder)
        return kb

    async def warm_up(self, folders: list[Path]) -> None:
        for f in folders:
            await self.get(f).ensure()


def knowledge_tool(kbs: KnowledgeBases) -> Tool:
    async def search_knowledge_base(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        options = ctx.options_for("search_knowledge_base")
        folder = kbs.folder(options)
        if folder is None:
            raise ToolError("this agent has no knowledge base folder (tools: search_knowledge_base options.path)")
        k = int(args.get("max_results") or options.get("results") or kbs.cfg.results)
        hits = await kbs.get(folder).asearch(str(args["query"]), k)
        if not hits:
            return {"passages": [], "note": "nothing in the knowledge base matches; say you don't know"}
        return {
            "passages": [
                {"text": p.text, "source": p.source, "section": p.heading, "score": round(s, 3)}
                for p, s in hits
            ]
        }

    return Tool(
        "search_knowledge_base",
        "Search the business's own documents (hours, prices, policies, products). Use before answering "
        "questions about the business; answer only from the passages returned.",
        {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 300},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        search_knowledge_base,
        timeout_s=10,
    )
