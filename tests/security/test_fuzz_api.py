"""CI-sized run of scripts/fuzz_api.py (the agent YAML loader and JSON bodies through the
real API listener), and the inputs it found that the loader used to mishandle."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from voxd.agents.loader import AgentLoadError, parse_agent

pytest.importorskip("hypothesis")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_api.py"


def load_fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_api", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzz_yaml_and_json_600_inputs():
    fuzz = load_fuzzer()
    ran = fuzz.run(600, seed_value=1, quiet=True)
    assert set(ran) == {"agent-yaml", "json-parse", "json-http"} and sum(ran.values()) == 600


def test_fuzzer_would_catch_a_5xx_or_an_untyped_exception(monkeypatch):
    fuzz = load_fuzzer()

    def broken(data: bytes) -> None:
        if len(data) > 5:
            raise KeyError("boom")

    monkeypatch.setattr(fuzz, "targets", lambda: [("broken", broken, "yaml")])
    with pytest.raises(KeyError):
        fuzz.run(50, quiet=True)


@pytest.mark.parametrize(("text", "why"), [
    # nested complex keys: each level tripled the time to turn the document into text (26 bytes: 2 s)
    ("? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? ? [[[[[[[[[[[? ? ? ? ", "mapping keys"),
    ("a: !!set x\n", "tags"),  # ruamel's set constructor raised AttributeError on a scalar
    ("a: !!python/object:os.system x\n", "tags"),
    ("a: &x 1\nb: &x 2\n", "defined twice"),
    # a merged key has no line: looking it up raised KeyError
    ("stt: &s {e2gine: fake}\nvoice: *s\nllm: {<<: *s, engine: dialog}\n", "e2gine"),
])
@pytest.mark.timeout(30)  # the nested keys took minutes before; refused on the event stream now
def test_inputs_the_fuzzer_found(text: str, why: str) -> None:
    with pytest.raises(AgentLoadError, match=why):
        parse_agent(text)
