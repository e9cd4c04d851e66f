"""The ``redaction:`` section: checked at load (an unsafe pattern names its field), turned
into the store's and the log's policy, and re-applied by a SIGHUP reload."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemons import start_daemon, time_agent
from voxd import logs
from voxd.config import ConfigError, load_config


def test_an_unsafe_pattern_is_refused_with_its_field(tmp_path: Path) -> None:
    bad = tmp_path / "voxd.yaml"
    bad.write_text("redaction:\n  orgs:\n    clinic:\n      patterns: [{name: mrn, regex: '(\\d+)+x'}]\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert f"{bad}: redaction.orgs.clinic.patterns.0.regex: " in str(err.value)
    assert "nested repetition" in str(err.value)


def test_the_policy_per_org(tmp_path: Path) -> None:
    good = tmp_path / "voxd.yaml"
    good.write_text("redaction:\n  detectors: [cards, emails]\n  patterns: [{name: account, regex: 'ACC-[0-9]{8}'}]\n"
                    "  orgs:\n    research: {enabled: false}\n"
                    "    clinic: {detectors: [cards], patterns: [{name: mrn, regex: 'MRN ?[0-9]{6,10}', "
                    "replacement: '[record]'}]}\n")
    cfg, _ = load_config(good)
    policy = cfg.redaction.policy()
    said = "ACC-12345678 MRN 1234567 4111111111111111 a@b.com 415-555-0123"
    default, clinic = policy.for_org("default"), policy.for_org("clinic")
    assert policy.for_org("research") is None and default is not None and clinic is not None
    assert default.text(said) == "[account] MRN 1234567 [card] [email] 415-555-0123"
    assert clinic.text(said) == "[account] [record] [card] a@b.com 415-555-0123"
    assert policy.for_logs().text(said) == "[account] [record] [card] [email] [phone]"


async def test_reload_applies_the_redaction_settings(tmp_path: Path) -> None:
    d = await start_daemon(tmp_path, {"fakey": time_agent()})
    try:
        assert d.db is not None
        red = d.db.pii()
        assert red is not None and red.text("4111111111111111") == "[card]"
        assert logs.redact("card 4111111111111111") == "card [card]"
        off = d.cfg.model_copy(update={"redaction": d.cfg.redaction.model_validate({"enabled": False})})
        d.config_loader = lambda: off
        await d.reload_now()
        assert d.db.pii() is None and d.db.for_org("default").pii() is None
        assert logs.redact("card 4111111111111111") == "card 4111111111111111"
    finally:
        await d.stop()
        logs.set_log_redaction(None)  # as before any daemon started
