"""config/voxd.yaml is the admin's reference: it loads, and it names every setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from voxd.config import ConfigError, VoxdConfig, load_config

CONFIG = Path(__file__).resolve().parents[2] / "config" / "voxd.yaml"


def settings(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted names of every setting, nested blocks included (list items are not walked)."""
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += settings(ann, f"{prefix}{name}.")
    return out


def test_the_shipped_config_loads_and_documents_every_setting() -> None:
    cfg, base = load_config(CONFIG)
    assert (base / cfg.agents_dir).is_dir()
    text = CONFIG.read_text()
    missing = [s for s in settings(VoxdConfig)
               if not re.search(rf"^[ #]*{re.escape(s.rsplit('.', 1)[-1])}:", text, re.MULTILINE)]
    assert missing == [], f"config/voxd.yaml does not mention: {missing}"


def test_the_values_it_shows_are_the_defaults() -> None:
    """The file says "these are the defaults": only the default agent is chosen on purpose."""
    cfg, _ = load_config(CONFIG)
    assert cfg.model_copy(update={"default_agent": None}) == VoxdConfig()


def test_a_bad_setting_is_named_with_its_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "voxd.yaml"
    bad.write_text("http:\n  public_url: voice.example.com/x\nwebrtc:\n  ice_servers: [{username: u}]\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    lines = str(err.value).splitlines()
    assert any(line.startswith(f"{bad}: http.public_url: ") and "scheme://host" in line for line in lines), lines
    assert any(line.startswith(f"{bad}: webrtc.ice_servers.0.urls: ") for line in lines), lines
