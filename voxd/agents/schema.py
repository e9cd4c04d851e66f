"""The agent YAML schema: validated, frozen configuration for one agent.

Every field here is documented because the JSON Schema exported from these models
(`voxd schema`) is what editors show admins while they type.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from voxd.agents.analysis_schema import AnalysisConfig as _AnalysisBase
from voxd.agents.outbound_checks import (
    OUTBOUND,
    context_outbound,
    engine_problems,
    http_function_problems,
    raise_problems,
)
from voxd.agents.variables import InboundLookup, VariableDef, check_names, declared
from voxd.core.secrets import SecretBook
from voxd.providers import engines
from voxd.providers.engines import Role

__all__ = ["OUTBOUND", "AnalysisConfig"]

DTMF_KEYS = "0123456789*#ABCD"
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _engine_field(role: Role, default: str, description: str) -> Any:
    """``engine:``: any engine registered for ``role`` (``voxd.providers.engines``); the
    exported JSON Schema lists the registered names."""

    def names(schema: dict[str, Any]) -> None:
        schema["enum"] = engines.names(role, first=default)

    return Field(default, description=description, json_schema_extra=names)


def _one_of(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


class _Cloud(_Model):
    """Where a hosted engine lives and which key it sends. The key never appears in agent
    YAML, and an agent never names a variable or a file: it names a secret the operator
    declared in voxd.yaml (``secrets:``), which is only ever sent to that secret's hosts.

    The engine's own rules (its options model, its default endpoint and secret, what it
    needs) come from its registration (``voxd.providers.engines``)."""

    _role: ClassVar[Role]
    engine: str
    options: dict[str, Any]

    base_url: str | None = Field(None, description="Server base URL (default: the vendor's public endpoint).")
    api_key_secret: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="Name of a secret declared in voxd.yaml (secrets:) holding the API key; it is only sent "
        "to the hosts declared for it. Default: the vendor's own secret (openai, deepgram, elevenlabs) "
        "when base_url is that vendor's host.",
    )
    api_key_env: str | None = Field(
        None, description="Deprecated: names the declared secret that reads this environment variable "
        "(a variable no secret reads is refused). Write api_key_secret instead.",
    )
    api_key_file: str | None = Field(
        None, description="Deprecated: names the declared secret that reads this file. Write api_key_secret instead.")
    prices: dict[str, float] = Field(
        default_factory=dict,
        description="USD per usage unit (audio_s, prompt_tokens, completion_tokens, characters), "
        "overriding the built-in price table.",
    )

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError("api_key_env must be the NAME of an environment variable, not the key")
        return v

    @field_validator("engine")
    @classmethod
    def _registered(cls, v: str) -> str:
        if engines.find(cls._role, v) is None:  # worded as pydantic words a Literal
            default = cls.model_fields["engine"].default
            raise PydanticCustomError("literal_error", "Input should be {expected} (unknown engine {engine})",
                                      {"expected": _one_of(engines.names(cls._role, first=default)), "engine": repr(v)})
        return v

    @model_validator(mode="after")
    def _engine_rules(self) -> Any:
        spec = engines.spec(self._role, self.engine)
        engines.parse_options(self._role, self.engine, self.options)
        problem = spec.check(self) if spec.check is not None else None
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _flat_fallback(self) -> Any:
        for fb in getattr(self, "fallback", []):
            if fb.fallback:
                raise ValueError("a fallback engine cannot have its own fallback list")
        return self

    def endpoint(self) -> str | None:
        """The URL this engine talks to (base_url, else the vendor's), None for local engines."""
        spec = engines.find(self._role, self.engine)
        return self.base_url or (spec.url if spec is not None else None)

    def key_secret(self, book: SecretBook) -> str | None:
        """The declared secret this engine sends: the one it names, else its vendor's when
        that secret may go to the engine's host; None: no key."""
        named = self.named_secret(book)
        if named is not None:
            return named
        spec = engines.find(self._role, self.engine)
        default = spec.secret if spec is not None else None
        url = self.endpoint()
        if default and url and book.get(default) is not None and book.problem(default, url) is None:
            return default
        return None

    def named_secret(self, book: SecretBook) -> str | None:
        if self.api_key_secret:
            return self.api_key_secret
        found = (book.by_env(self.api_key_env) if self.api_key_env
                 else book.by_file(self.api_key_file) if self.api_key_file else None)
        return found.name if found is not None else None

    @model_validator(mode="after")
    def _secret_and_destination(self, info: ValidationInfo) -> Any:
        """With the daemon's outbound rules in the validation context (the loader passes
        them), refuse what the engine would be refused at run time, naming the field."""
        out = context_outbound(info)
        if out is not None:
            raise_problems(type(self).__name__, engine_problems(self, out))
        return self


class STTConfig(_Cloud):
    _role: ClassVar[Role] = "stt"
    engine: str = _engine_field(
        "stt", "whisper",
        "Speech recogniser. 'whisper' runs faster-whisper tiny.en offline; 'deepgram' streams to Deepgram.",
    )
    model: str = Field("tiny.en", description="Model name or path for the engine (deepgram: nova-3 unless set).")
    language: str = Field("en", description="Language code passed to the engine.")
    options: dict[str, Any] = Field(default_factory=dict, description="Engine-specific options.")
    fallback: list[STTConfig] = Field(
        default_factory=list, description="Engines to switch to, in order, if this one fails during a call."
    )


class LLMConfig(_Cloud):
    _role: ClassVar[Role] = "llm"
    engine: str = _engine_field(
        "llm", "dialog",
        "'dialog' is the offline intent engine driven by this file's `dialog:` block; "
        "'openai' uses the official OpenAI SDK (any compatible server via base_url); "
        "'openai-compatible' talks to any chat-completions server by base_url.",
    )
    model: str | None = Field(None, description="Model name sent to the server.")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    timeout_s: float = Field(30.0, gt=0, description="Whole-request timeout.")
    first_token_timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10, description="Retries on 429/5xx before the first token (openai).")
    options: dict[str, Any] = Field(default_factory=dict)
    fallback: list[LLMConfig] = Field(
        default_factory=list, description="Engines to switch to, in order, if this one fails during a call."
    )


class AnalysisConfig(_AnalysisBase):
    __doc__ = _AnalysisBase.__doc__
    llm: LLMConfig | None = Field(
        None, description="The model that writes the analysis (engine: llm/auto); default: the agent's own llm.")


class VoiceConfig(_Cloud):
    _role: ClassVar[Role] = "tts"
    engine: str = _engine_field(
        "tts", "piper",
        "'piper' (natural, en_US-joe-medium), 'espeak' (instant, robotic) or 'elevenlabs' (hosted).",
    )
    voice: str | None = Field(None, description="Voice name: piper model name/path or espeak voice (en-us).")
    voice_id: str | None = Field(None, description="Hosted voice id (elevenlabs).")
    model: str | None = Field(None, description="Hosted TTS model (elevenlabs: eleven_flash_v2_5 unless set).")
    output_format: Literal["pcm_16000", "pcm_22050", "pcm_24000", "ulaw_8000"] = Field(
        "pcm_16000", description="Audio format asked of a hosted voice (ulaw_8000 suits G.711 calls)."
    )
    speed: float = Field(1.0, gt=0.3, le=3.0, description="Speaking rate multiplier.")
    first_audio_timeout_s: float = Field(
        5.0, gt=0, description="A hosted voice that sends no audio within this time is treated as failed."
    )
    options: dict[str, Any] = Field(default_factory=dict)
    fallback: list[VoiceConfig] = Field(
        default_factory=list, description="Engines to switch to, in order, if this one fails during a call."
    )


class TurnConfig(_Model):
    """When the caller has finished speaking."""

    detector: Literal["smart_turn", "silence"] = Field(
        "smart_turn", description="'smart_turn' asks Smart Turn v3 after a short silence; 'silence' waits for max_silence_ms."
    )
    min_silence_ms: int = Field(200, ge=60, le=5000, description="Silence before the turn model is asked.")
    max_silence_ms: int = Field(1200, ge=100, le=10000, description="Silence after which the turn ends regardless.")
    smart_turn_threshold: float = Field(0.5, gt=0, lt=1)
    max_turn_s: float = Field(30.0, gt=1, description="A turn longer than this is ended at the next pause.")
    speculative_stt: bool | None = Field(
        None, description="At each pause (min_silence_ms), a recogniser that decodes whole turns (whisper) starts "
        "on the audio so far while the turn is being decided; its text is used if the turn ends there, and "
        "wasted if the caller goes on. Default: on with the silence detector (about 650 ms sooner replies "
        "measured), off with smart_turn (on a 2-core box the decode slowed Smart Turn's answer more than it saved).")

    @property
    def speculates(self) -> bool:
        """speculative_stt, its default resolved by the detector."""
        return self.detector == "silence" if self.speculative_stt is None else self.speculative_stt

    @model_validator(mode="after")
    def _order(self) -> TurnConfig:
        if self.max_silence_ms < self.min_silence_ms:
            raise ValueError("max_silence_ms must be >= min_silence_ms")
        return self


class InterruptionConfig(_Model):
    """Barge-in: the caller talks over the bot."""

    enabled: bool = True
    min_speech_ms: int = Field(
        300, ge=0, le=3000,
        description="Speech shorter than this while the bot talks is a backchannel: the bot pauses "
        "at once and resumes if the caller stops within this time.",
    )
    min_words: int = Field(0, ge=0, description="Also require this many recognised words (streaming STT only).")


class MenuOption(_Model):
    say: str | None = Field(None, description="What the bot says when the key is pressed.")
    then: Literal["llm", "hangup", "transfer", "goto", "collect", "repeat"] = Field(
        "llm", description="What happens next: back to conversation, hang up, transfer, another menu, collect digits, repeat this menu."
    )
    target: str | None = Field(None, description="For transfer: number or SIP URI. For goto: menu name. For collect: collection name.")
    mode: Literal["blind", "attended"] = Field(
        "blind", description="For transfer: blind (REFER at once) or attended (the caller waits on hold while the "
        "target is called and hears `summary`, then the caller is handed over with REFER + Replaces).")
    summary: str | None = Field(None, max_length=1000, description="For an attended transfer: what the target hears first.")

    @model_validator(mode="after")
    def _target(self) -> MenuOption:
        if self.then in ("transfer", "goto", "collect") and not self.target:
            raise ValueError(f"then: {self.then} needs a target")
        return self


class Menu(_Model):
    prompt: str = Field(..., description="Spoken when the menu starts.")
    options: dict[str, MenuOption]
    invalid: str = Field("Sorry, that's not an option.", description="Said for a key with no option.")
    timeout_ms: int = Field(8000, ge=500, description="Re-prompt after this long without a key.")
    max_retries: int = Field(2, ge=0)

    @field_validator("options", mode="before")
    @classmethod
    def _keys(cls, v: Any) -> Any:
        if isinstance(v, dict):
            out = {}
            for k, opt in v.items():
                key = str(k)
                if len(key) != 1 or key not in DTMF_KEYS:
                    raise ValueError(f"menu key {key!r} is not a single keypad key ({DTMF_KEYS})")
                out[key] = opt
            return out
        return v


class Collect(_Model):
    prompt: str
    max_digits: int = Field(16, ge=1, le=64)
    min_digits: int = Field(1, ge=1)
    finish_on: str = Field("#", description="Key that ends entry early ('' for none).")
    inter_digit_timeout_ms: int = Field(3000, ge=200)
    then: Literal["llm", "tool"] = Field("llm", description="Give the digits to the conversation, or call `tool`.")
    tool: str | None = None
    argument: str = Field("digits", description="Argument name for the tool call.")
    confirm: str | None = Field(None, description="Said after entry, {digits} is replaced ('***' when secure).")
    secure: bool = Field(
        False, description="A card number or PIN: the digits are masked ('***') in the transcript, logs and "
        "webhooks, and a recording holds silence while the entry runs (recording.pause_on_secure_input).")


class RecordingConfig(_Model):
    enabled: bool = Field(False, description="Record the call's audio into the state directory.")
    channels: Literal["stereo", "mono"] = Field("stereo", description="stereo: caller left, bot right; mono: mixed.")
    format: Literal["wav", "opus"] = Field("wav", description="wav: 16 kHz PCM; opus: Opus in Ogg.")
    consent_prompt: str | None = Field(
        None, max_length=1000, description="Said before the greeting when the call is recorded.")
    pause_on_secure_input: bool = Field(True, description="Silence while a `secure: true` DTMF collection runs.")
    retention_days: float | None = Field(
        None, gt=0, description="Delete the recording this many days after the call (none: keep).")


class DtmfConfig(_Model):
    menus: dict[str, Menu] = Field(default_factory=dict)
    collect: dict[str, Collect] = Field(default_factory=dict)
    main_menu: str | None = Field(None, description="Menu a key press opens when no menu is active.")
    start_menu: bool = Field(False, description="Speak main_menu's prompt right after the greeting.")

    @model_validator(mode="after")
    def _refs(self) -> DtmfConfig:
        if self.main_menu and self.main_menu not in self.menus:
            raise ValueError(f"main_menu {self.main_menu!r} is not a defined menu")
        for name, menu in self.menus.items():
            for key, opt in menu.options.items():
                if opt.then == "goto" and opt.target not in self.menus:
                    raise ValueError(f"menus.{name}.options.{key}: goto target {opt.target!r} is not a menu")
                if opt.then == "collect" and opt.target not in self.collect:
                    raise ValueError(f"menus.{name}.options.{key}: collect target {opt.target!r} is not defined")
        return self


class Slot(_Model):
    name: str
    extract: Literal["number", "digits", "time", "date", "weekday", "expression", "text", "name"]
    prompt: str = Field(..., description="Asked when the slot is missing.")
    required: bool = True


class Intent(_Model):
    name: str = Field(..., pattern=r"^[a-z][a-z0-9_]*$")
    examples: list[str] = Field(default_factory=list, description="Example phrases, matched fuzzily.")
    keywords: list[str] = Field(default_factory=list, description="Words that point at this intent.")
    patterns: list[str] = Field(default_factory=list, description="Regular expressions (case-insensitive).")
    reply: str | None = Field(None, description="Reply template: {slot}, {result}, {result.field}.")
    tool: str | None = Field(None, description="Function to call; its result fills {result}.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="Tool arguments; '$slot' takes a slot value.")
    slots: list[Slot] = Field(default_factory=list)
    menu: str | None = Field(None, description="Hand the caller to this keypad menu.")

    @field_validator("patterns")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"bad regular expression {p!r}: {e}") from e
        return v

    @model_validator(mode="after")
    def _something(self) -> Intent:
        if not (self.examples or self.keywords or self.patterns):
            raise ValueError("an intent needs examples, keywords or patterns")
        if not (self.reply or self.tool or self.menu):
            raise ValueError("an intent needs a reply, a tool or a menu")
        return self


class DialogConfig(_Model):
    intents: list[Intent] = Field(default_factory=list)
    fallback: str = Field("Sorry, I didn't catch that. Could you say it another way?")
    threshold: float = Field(0.55, gt=0, lt=1, description="Minimum match score for an intent.")


class SipConfig(_Model):
    numbers: list[str] = Field(default_factory=list, description="Request-URI users routed to this agent.")


class ToolRef(_Model):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class HttpFunction(_Model):
    """A request voxd sends when the LLM calls the function, signed with Standard Webhooks
    headers (webhook-id, webhook-timestamp, webhook-signature) so the receiver can verify it."""

    url: str = Field(..., pattern=r"^https?://\S+$",
                     description="May hold {argument} placeholders (URL-encoded) in its path and query, not its host.")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Values may use secrets declared in voxd.yaml as ${name} (each only for its declared hosts); "
        "never logged.",
    )
    body: Any = Field(
        None,
        description="JSON body template: a string that is exactly '{arg}' becomes the argument's value, "
        "'{arg}' inside longer strings is replaced by its text. Default: the arguments themselves "
        "(GET/DELETE: as the query string).",
    )
    timeout_s: float = Field(10.0, gt=0, le=60)
    secret_env: str | None = Field(
        None, description="Declared secret (voxd.yaml secrets:, by name or by its variable) holding this "
        "function's whsec_ signing secret (default: the daemon's)."
    )

    @field_validator("url")
    @classmethod
    def _fixed_host(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/?#{}]+(?:[/?#]|$)", v):
            raise ValueError("{argument} placeholders may fill the path and query, never the host: "
                             "the caller must not choose where the request (and its secrets) go")
        return v

    @model_validator(mode="after")
    def _secrets_and_destination(self, info: ValidationInfo) -> HttpFunction:
        out = context_outbound(info)  # without it: checked at run time by the function library all the same
        if out is not None:
            raise_problems("HttpFunction", http_function_problems(self, out))
        return self


class FunctionDef(_Model):
    """A custom function this agent may call, besides the built-ins listed in `tools`."""

    name: str = Field(..., pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = Field(..., min_length=1, description="Tells the LLM when to call it.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema (an object schema) of the arguments.",
    )
    http: HttpFunction | None = None
    python: str | None = Field(
        None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="'module:function' found in the daemon's tools.plugin_paths; called with (arguments, context).",
    )
    timeout_s: float = Field(10.0, gt=0, le=300)
    interruptible: bool = Field(True, description="Whether the caller talking over the bot cancels it.")

    @model_validator(mode="after")
    def _one_kind(self) -> FunctionDef:
        if (self.http is None) == (self.python is None):
            raise ValueError(f"function {self.name!r} needs exactly one of http or python")
        if self.parameters.get("type") != "object":
            raise ValueError(f"function {self.name!r}: parameters must be an object schema")
        return self


class AgentConfig(_Model):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    greeting: str | None = Field(None, description="Said when the call is answered.")
    prompt: str = Field("You are a helpful voice assistant. Keep replies short.", description="System prompt for LLM engines.")
    timezone: str = Field("UTC", description="IANA zone for time tools.")
    goodbye: str | None = Field("Goodbye!", description="Said before the agent hangs up.")
    stt: STTConfig = Field(default_factory=lambda: STTConfig())
    llm: LLMConfig = Field(default_factory=lambda: LLMConfig())
    voice: VoiceConfig = Field(default_factory=lambda: VoiceConfig())
    turn: TurnConfig = Field(default_factory=lambda: TurnConfig())
    interruption: InterruptionConfig = Field(default_factory=lambda: InterruptionConfig())
    tools: list[str | ToolRef] = Field(default_factory=list, description="Functions this agent may call.")
    functions: list[FunctionDef] = Field(
        default_factory=list, description="Custom HTTP or Python functions; each is available to this agent."
    )
    dtmf: DtmfConfig = Field(default_factory=lambda: DtmfConfig())
    recording: RecordingConfig = Field(default_factory=lambda: RecordingConfig())
    dialog: DialogConfig = Field(default_factory=lambda: DialogConfig())
    sip: SipConfig = Field(default_factory=lambda: SipConfig())
    max_call_s: float = Field(3600, gt=0)
    filler_after_ms: int = Field(
        1500, ge=0, description="If a function runs longer than this, say `filler` once so the caller never hears dead air (0 = never)."
    )
    filler: str = Field("One moment while I check that.", description="Said while a slow function runs.")
    variables: dict[str, VariableDef] = Field(
        default_factory=dict,
        description="Per-call variables: {name} in the greeting, prompt, dialog replies, menus and function "
        "templates. Each has a default (name: {default: there}, or name: there); a call's values come from "
        "POST /api/v1/calls or the inbound lookup. {{ and }} are literal braces.",
    )
    inbound_lookup: InboundLookup | None = Field(
        None, description="Asked before an inbound call is answered: may return variables, another agent, or reject.")

    @field_validator("variables", mode="before")
    @classmethod
    def _short_variables(cls, v: Any) -> Any:
        return declared(v)

    @field_validator("variables")
    @classmethod
    def _variable_names(cls, v: dict[str, VariableDef]) -> dict[str, VariableDef]:
        return check_names(v)
    analysis: AnalysisConfig = Field(default_factory=lambda: AnalysisConfig(),
                                     description="Post-call analysis: summary, outcome, extracted fields, sentiment.")

    @field_validator("stt", "llm", "voice", mode="before")
    @classmethod
    def _chain(cls, v: Any) -> Any:
        """`stt: [primary, fallback, ...]` is short for `stt: {<primary>, fallback: [...]}`."""
        if isinstance(v, list):
            v = [{"engine": x} if isinstance(x, str) else x for x in v]  # [local, dialog]
            if not v or not all(isinstance(x, dict) for x in v):
                raise ValueError("an engine chain is a non-empty list of engine blocks")
            return {**v[0], "fallback": list(v[0].get("fallback", [])) + list(v[1:])}
        return v

    @property
    def tool_names(self) -> list[str]:
        return [t if isinstance(t, str) else t.name for t in self.tools] + [f.name for f in self.functions]

    def tool_options(self, name: str) -> dict[str, Any]:
        for t in self.tools:
            if isinstance(t, ToolRef) and t.name == name:
                return dict(t.options)
        return {}

    @model_validator(mode="after")
    def _refs(self) -> AgentConfig:
        names = self.tool_names
        if len(names) != len(set(names)):
            raise ValueError("a function name appears twice in tools/functions")
        for intent in self.dialog.intents:
            if intent.menu and intent.menu not in self.dtmf.menus:
                raise ValueError(f"dialog intent {intent.name!r}: menu {intent.menu!r} is not defined")
            if intent.tool and intent.tool not in self.tool_names:
                raise ValueError(
                    f"dialog intent {intent.name!r}: tool {intent.tool!r} is not in this agent's tools"
                )
        intents = {i.name for i in self.dialog.intents}
        for label, intent_name in self.analysis.outcomes.items():
            if intent_name is not None and intent_name not in intents:
                raise ValueError(f"analysis.outcomes.{label}: dialog intent {intent_name!r} is not defined")
        for name, c in self.dtmf.collect.items():
            if c.then == "tool" and (not c.tool or c.tool not in self.tool_names):
                raise ValueError(f"dtmf.collect.{name}: tool {c.tool!r} is not in this agent's tools")
        return self
