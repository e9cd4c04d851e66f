"""Codec preferences in voxd.yaml (sip.codecs, sip.trunks[].codecs): names checked at
load time with an error naming the field and the known codecs."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxd.config import ConfigError, VoxdConfig, load_config
from voxd.config.sip import CODECS
from voxd.proto import negotiate


def test_names_are_spelled_as_sdp_has_them_in_order_once() -> None:
    cfg = VoxdConfig.model_validate({"sip": {
        "codecs": ["pcmu", "g722", "PCMU"],
        "trunks": [{"name": "carrier", "allow": ["203.0.113.0/24"], "codecs": ["OPUS", "g722", "pcma"]},
                   {"name": "pbx", "allow": ["198.51.100.0/24"]}]}})
    sip = cfg.sip
    assert sip.codecs == ["PCMU", "G722"]
    assert sip.codecs_for(sip.trunks[0]) == ["opus", "G722", "PCMA"]
    assert sip.codecs_for(sip.trunks[1]) == ["PCMU", "G722"]  # no codecs of its own: sip.codecs
    assert sip.codecs_for(None) == ["PCMU", "G722"]
    assert VoxdConfig().sip.codecs == ["PCMU", "PCMA"]  # the default stays G.711


def test_the_config_knows_what_negotiation_knows() -> None:
    assert CODECS == negotiate.KNOWN


@pytest.mark.parametrize(("sip", "where"), [
    ({"codecs": ["PCMU", "g729"]}, "sip.codecs"),
    ({"trunks": [{"name": "carrier", "allow": ["203.0.113.0/24"], "codecs": ["opus", "speex"]}]},
     "sip.trunks.0.codecs"),
])
def test_an_unknown_codec_is_a_clear_error(tmp_path: Path, sip: dict[str, object], where: str) -> None:
    import json

    path = tmp_path / "voxd.yaml"
    path.write_text(json.dumps({"sip": sip}))  # JSON is YAML
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert f"{path}: {where}:" in msg
    assert "unknown codec" in msg and "known: PCMU, PCMA, G722, opus" in msg, msg


def test_an_empty_preference_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one codec"):
        VoxdConfig.model_validate({"sip": {"trunks": [{"name": "t", "allow": ["10.0.0.0/8"], "codecs": []}]}})
