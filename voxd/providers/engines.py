"""The engine table: every speech recogniser, language model and voice registers itself here.

Adding a vendor is one module. It registers, at import, an :class:`EngineSpec`: the
``engine:`` name agent YAML uses, its role, its factory, the model of its ``options:``
block, its list prices and, for a hosted engine, its default endpoint and secret::

    from voxd.providers.engines import BuildContext, EngineSpec, Options, register

    class AcmeOptions(Options):            # validates `options:` (unknown keys refused)
        beam: int = 4

    def build(cfg: STTConfig, opts: AcmeOptions, ctx: BuildContext) -> SpeechToText:
        return AcmeSTT(cfg.model, beam=opts.beam, key=ctx.api_key(cfg, "acme"))

    register(EngineSpec("stt", "acme", build, options=AcmeOptions,
                        prices={"audio_s": 0.0001}, url="wss://api.acme.example", secret="acme"))

Agent YAML then says ``stt: {engine: acme, options: {beam: 2}}``: the schema accepts the
name and validates the options at load time, the factory builds it, the call's usage
prices it. Nothing else is edited.

Where modules are found (on the first lookup, :func:`discover`): every module of
``voxd.providers.stt``, ``.llm`` and ``.tts``, ``voxd.providers.fakes``, and the entry
points of the ``voxd.engines`` group (an installed package's vendor module). A module
imported by any other means (a test, a plugin path) registers the same way.

Factories run with a :class:`BuildContext` (the daemon's outbound rules and, for a
language model, the agent). Speech engines marked ``shared`` are built once per distinct
config and shared by every call; language models are built per call.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from voxd.core.secrets import Outbound

if TYPE_CHECKING:
    from voxd.agents.schema import AgentConfig
    from voxd.providers.keys import Secret

log = logging.getLogger("voxd.providers")

Role = Literal["stt", "llm", "tts"]
# where each role's `engine:` is written in agent YAML (for error messages)
YAML_KEY: dict[Role, str] = {"stt": "stt", "llm": "llm", "tts": "voice"}
ENTRY_POINT_GROUP = "voxd.engines"
_PACKAGES = ("voxd.providers.stt", "voxd.providers.llm", "voxd.providers.tts")
_MODULES = ("voxd.providers.fakes",)


class Options(BaseModel):
    """Base of an engine's ``options:`` model: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def given(self) -> dict[str, Any]:
        """The options the YAML set, as keyword arguments (the engine keeps its own
        defaults for the rest)."""
        return self.model_dump(exclude_unset=True)


class FreeOptions(BaseModel):
    """``options:`` passed through as they are (fakes; request-body extras of a
    chat-completions server)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def given(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


@dataclass(frozen=True)
class BuildContext:
    outbound: Outbound = field(default_factory=Outbound)
    agent: AgentConfig | None = None  # given to language models (the dialog engine reads `dialog:`)

    def api_key(self, cfg: Any, provider: str, *, required: bool = True) -> Secret:
        """The engine's API key (``voxd.providers.keys.api_key``): a declared secret, sent
        only to its hosts; a ``Secret`` that never shows in logs."""
        from voxd.providers.keys import api_key

        return api_key(cfg, provider, self.outbound, required=required)


@dataclass(frozen=True)
class EngineSpec:
    role: Role
    name: str  # the `engine:` value
    build: Callable[[Any, Any, BuildContext], Any]  # (engine config, validated options, context) -> engine
    options: type[BaseModel] = FreeOptions
    prices: Mapping[str, float] = field(default_factory=dict)  # USD per unit: audio_s, prompt_tokens, ...
    url: str | None = None  # a hosted engine's endpoint when base_url is not given
    secret: str | None = None  # the declared secret it sends by default (to that endpoint's host)
    shared: bool = True  # speech engines: one instance per distinct config; False: one per call
    check: Callable[[Any], str | None] | None = None  # a config problem the schema reports, or None


_lock = threading.Lock()  # the table
# discovery imports modules: never under _lock, which a module's register() takes (a
# thread importing a vendor module directly must not wait on a discovering thread)
_discovery = threading.RLock()
_specs: dict[tuple[Role, str], EngineSpec] = {}
_discovered = False


def register(spec: EngineSpec) -> EngineSpec:
    """Add (or, re-imported, replace) an engine. Returns ``spec``."""
    with _lock:
        _specs[(spec.role, spec.name)] = spec
    return spec


def unregister(role: Role, name: str) -> None:
    """Forget an engine (tests that register throwaway ones)."""
    with _lock:
        _specs.pop((role, name), None)


def discover() -> None:
    """Import every module that may register engines (once per process)."""
    global _discovered
    with _discovery:
        if _discovered:
            return
        _discovered = True
        names: list[str] = list(_MODULES)
        for pkg_name in _PACKAGES:
            pkg = importlib.import_module(pkg_name)
            names += [f"{pkg_name}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]
        for name in names:
            try:
                importlib.import_module(name)
            except ImportError as e:  # an optional vendor library missing: its engines are unknown
                log.warning("engines: %s not loaded: %s", name, e)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except Exception:
                log.exception("engines: entry point %s failed", ep.name)


def names(role: Role, first: str | None = None) -> list[str]:
    """The engines of ``role``: ``first`` (the schema's default), then the local ones, the
    hosted ones (those with a default ``url``), and the unshared test fakes."""
    discover()
    with _lock:
        specs = [s for (r, _), s in _specs.items() if r == role]
    specs.sort(key=lambda s: (s.name != first, not s.shared, s.url is not None))
    return [s.name for s in specs]


def find(role: Role, name: str) -> EngineSpec | None:
    with _lock:
        spec = _specs.get((role, name))
    if spec is None:
        discover()
        with _lock:
            spec = _specs.get((role, name))
    return spec


def spec(role: Role, name: str) -> EngineSpec:
    found = find(role, name)
    if found is None:
        raise ValueError(f"{YAML_KEY[role]}.engine: unknown engine {name!r}; expected one of {sorted(names(role))}")
    return found


def list_prices() -> dict[str, dict[str, float]]:
    """Every engine's list prices by provider name (``CallUsage`` starts from these)."""
    discover()
    with _lock:
        return {s.name: dict(s.prices) for s in _specs.values() if s.prices}


def parse_options(role: Role, name: str, options: Mapping[str, Any]) -> BaseModel:
    """``options:`` validated by the engine's model; unknown keys are named."""
    model = spec(role, name).options
    unknown = set(options) - set(model.model_fields) if model.model_config.get("extra") == "forbid" else set()
    where = YAML_KEY[role]
    if unknown:
        raise ValueError(f"{where}.options: unknown option(s) {sorted(unknown)}; "
                         f"expected some of {sorted(model.model_fields)}")
    try:
        return model.model_validate(dict(options))
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ValueError(f"{where}.options: {errs}") from None


def build(role: Role, cfg: Any, ctx: BuildContext) -> Any:
    """The engine ``cfg.engine`` names, built by its factory, carrying ``cfg.prices``."""
    s = spec(role, cfg.engine)
    engine = s.build(cfg, parse_options(role, cfg.engine, cfg.options), ctx)
    if cfg.prices:
        # a per-engine override of the list prices (voxd.providers.pricing.CallUsage reads it)
        object.__setattr__(engine, "prices", MappingProxyType(dict(cfg.prices)))
    return engine
