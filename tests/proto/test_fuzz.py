"""CI-sized run of scripts/fuzz_sip.py (the full run uses --count 100000)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_sip.py"


def load_fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_sip", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzz_decoders_2000_inputs():
    fuzz = load_fuzzer()
    ran = fuzz.run(2000, seed_value=1, quiet=True)
    assert set(ran) == {name for name, _, _ in fuzz.targets()}
    assert sum(ran.values()) == 2000


def test_fuzzer_would_catch_an_untyped_exception(monkeypatch):
    fuzz = load_fuzzer()

    def broken(data: bytes) -> None:
        if len(data) > 5:
            raise IndexError("boom")

    monkeypatch.setattr(fuzz, "targets", lambda: [("broken", broken, "sip")])
    with pytest.raises(IndexError):
        fuzz.run(50, quiet=True)
