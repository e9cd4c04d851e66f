"""Conversation test suites: the YAML format and its validation.

A suite lives next to the agents it tests (``agents/tests/<agent>.yaml``)::

    agent: receptionist            # ../receptionist.yaml, or a path relative to this file
    voice: flite:slt               # the caller's voice for `say:` (never the agent's own)
    llm: dialog                    # optional: pin the agent's llm engine for this suite
    judge_llm: {engine: openai, model: gpt-4o-mini}   # optional; else the agent's own LLM
    scenarios:
      - name: asks the time
        steps:
          - say: What time is it?
            expect: {tool: get_current_time}
            reply_contains: London

Each step is one caller action (``say``, ``audio``, ``dtmf``, ``wait``, ``silence``,
``interrupt``) and what must happen before the next step. Errors name the file, the
line and the field, through the agents' bounded YAML loader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from voxd.agents.loader import MAX_DOCUMENT_BYTES, AgentLoadError, FieldError, _line_of, _plain, load_yaml
from voxd.agents.schema import LLMConfig

ACTIONS = ("say", "audio", "dtmf", "wait", "silence", "interrupt")
VOICES = ("flite:slt", "flite:kal", "flite:awb", "flite:rms", "festival:kal", "piper:joe")
DTMF_KEYS = "0123456789*#ABCD"


class SuiteError(AgentLoadError):
    """A suite file that cannot be used; ``errors`` name file, line and field."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolExpect(_M):
    tool: str = Field(..., min_length=1, description="The function that must have been called in this step.")
    args: dict[str, Any] | None = Field(None, description="Arguments it must have had (a subset; strings compared "
                                        "without case or spacing).")
    error: bool | str | None = Field(None, description="true: it must have failed; a string: its error contains "
                                     "this; false: it must have succeeded.")
    count: int | None = Field(None, ge=0, description="Exactly this many calls (default: at least one).")


class Step(_M):
    say: str | list[str] | None = Field(None, description="Caller speech, synthesised; a list is spoken with "
                                        "pause_ms of silence between its parts (a mid-sentence pause).")
    audio: str | None = Field(None, description="Caller audio: a WAV file (relative to the suite).")
    text: str | None = Field(None, description="What `audio:` says, for --text runs.")
    dtmf: str | None = Field(None, description="Keypad digits, pressed 150 ms apart.")
    wait: float | None = Field(None, gt=0, le=120, description="Seconds to let pass (the bot may talk); "
                               "no settling afterwards.")
    silence: float | None = Field(None, gt=0, le=120, description="Seconds the caller stays silent; then the "
                                  "bot's reaction is awaited.")
    interrupt: str | None = Field(None, description="Caller speech over the bot's reply, after_ms into it.")
    voice: str | None = Field(None, description="This step's caller voice (default: the suite's).")
    pause_ms: int = Field(600, ge=0, le=5000, description="Silence between the parts of a `say:` list.")
    after_ms: int = Field(700, ge=0, le=20000, description="`interrupt:` starts this long after the bot's voice.")

    expect: ToolExpect | list[ToolExpect] | None = None
    no_tool: bool | None = Field(None, description="true: no function was called in this step.")
    reply_contains: str | list[str] | None = Field(None, description="Words the bot's reply must contain "
                                                   "(all of them; case and punctuation ignored).")
    reply_not_contains: str | list[str] | None = None
    reply_matches: str | None = Field(None, description="A regular expression the reply must match (searched, "
                                      "case-insensitive).")
    no_reply: bool | None = Field(None, description="true: the bot said nothing in this step.")
    transferred: bool | str | None = Field(None, description="true, or the target it was transferred to.")
    hung_up: bool | None = Field(None, description="The bot ended the call in this step (true) or not (false).")
    max_latency_ms: float | None = Field(None, gt=0, description="End of caller speech -> first bot audio, each "
                                         "reply in this step.")
    no_interruption: bool | None = Field(None, description="true: the bot was not interrupted in this step "
                                         "(a backchannel or noise did not stop it).")
    interrupted: bool | None = Field(None, description="true: the bot's reply was cut short by the caller.")
    single_turn: bool | None = Field(None, description="true: what the caller said in this step was taken as one "
                                     "turn (not cut off at a pause and answered in pieces).")
    judge: str | None = Field(None, description="A statement about the conversation so far, judged by an LLM.")

    @field_validator("dtmf")
    @classmethod
    def _digits(cls, v: str | None) -> str | None:
        if v is not None:
            bad = [c for c in v if c not in DTMF_KEYS]
            if not v or bad:
                raise ValueError(f"digits must be from {DTMF_KEYS!r}, got {v!r}")
        return v

    @field_validator("voice")
    @classmethod
    def _voice(cls, v: str | None) -> str | None:
        return _check_voice(v)

    @field_validator("reply_matches")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a regular expression: {e}") from None
        return v

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        given = [a for a in ACTIONS if getattr(self, a) is not None]
        if len(given) != 1:
            raise ValueError(f"a step has exactly one of {', '.join(ACTIONS)}"
                             + (f"; this one has {', '.join(given)}" if given else ""))
        if isinstance(self.say, list) and not self.say:
            raise ValueError("say: an empty list")
        if self.text is not None and self.audio is None:
            raise ValueError("text: describes an audio: step")
        return self

    @property
    def action(self) -> str:
        return next(a for a in ACTIONS if getattr(self, a) is not None)

    @property
    def tool_expects(self) -> list[ToolExpect]:
        if self.expect is None:
            return []
        return list(self.expect) if isinstance(self.expect, list) else [self.expect]

    @property
    def words(self) -> str | None:
        """What the caller says in this step, as text (None: nothing said in words)."""
        if isinstance(self.say, list):
            return " ".join(self.say)
        return self.say or self.interrupt or self.text


class Scenario(_M):
    name: str = Field(..., min_length=1, max_length=200)
    tags: list[str] = Field(default_factory=list)
    only: Literal["audio", "text"] | None = Field(None, description="Run this scenario only in this mode.")
    voice: str | None = None
    steps: list[Step] = Field(..., min_length=1)
    judge: str | None = Field(None, description="A statement about the whole conversation, judged by an LLM.")
    llm: str | None = Field(None, description="Pin the agent's llm engine for this scenario (e.g. dialog, for "
                            "expectations on the dialog engine's exact prompts).")
    xfail: str | None = Field(None, description="A known defect (why): a failure is reported as expected and "
                              "does not fail the run; a pass is reported as fixed.")

    @field_validator("voice")
    @classmethod
    def _voice(cls, v: str | None) -> str | None:
        return _check_voice(v)


class Suite(_M):
    agent: str = Field(..., min_length=1, description="Agent file (relative to the suite's folder's parent, "
                       "or to the suite) or agent name.")
    voice: str = "flite:slt"
    llm: str | None = Field(None, description="Pin the agent's llm engine for this suite, e.g. dialog.")
    judge_llm: LLMConfig | None = None
    scenarios: list[Scenario] = Field(..., min_length=1)

    @field_validator("voice")
    @classmethod
    def _voice(cls, v: str) -> str:
        return _check_voice(v) or v

    @model_validator(mode="after")
    def _unique(self) -> Suite:
        names = [s.name for s in self.scenarios]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"scenario names must be unique: {', '.join(dup)}")
        return self


def _check_voice(v: str | None) -> str | None:
    if v is not None and v not in VOICES and not v.startswith(("espeak:", "piper:")):
        raise ValueError(f"voice {v!r}: one of {', '.join(VOICES)} (or espeak:<voice>, piper:<model.onnx>)")
    return v


class LoadedSuite:
    def __init__(self, suite: Suite, path: Path, lines: dict[tuple[int, int], int],
                 agent_line: int | None = None) -> None:
        self.suite = suite
        self.path = path
        self._lines = lines  # (scenario, step) -> line
        self.agent_line = agent_line

    def line_of(self, scenario: int, step: int | None = None) -> int | None:
        return self._lines.get((scenario, -1 if step is None else step))

    def agent_path(self) -> Path:
        ref = self.suite.agent
        here = self.path.parent
        candidates = [here / ref, here.parent / ref]
        if not ref.endswith((".yaml", ".yml")):
            candidates += [here.parent / f"{ref}.yaml", here / f"{ref}.yaml"]
        for c in candidates:
            if c.is_file():
                return c
        return candidates[-1 if not ref.endswith((".yaml", ".yml")) else 1]


_TYPE_TAGS = {"str", "bool", "int", "float", "list", "dict", "none"}


def _union_tag(part: int | str) -> bool:
    """pydantic names the member of a union it tried (``ToolExpect``, ``list[ToolExpect]``,
    ``str``) in an error's location; the location the user wrote has only field names."""
    if not isinstance(part, str):
        return False
    return part[:1].isupper() or "[" in part or part in _TYPE_TAGS or part.startswith("function-")


def parse_suite(text: str, source: str) -> LoadedSuite:
    try:
        doc = load_yaml(text, source)
    except AgentLoadError as e:
        raise SuiteError(e.errors) from None
    if not isinstance(doc, dict):
        raise SuiteError([FieldError(source, 1, "", "a suite file is a mapping with agent: and scenarios:")])
    try:
        suite = Suite.model_validate(_plain(doc))
    except ValidationError as e:
        errors = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if not _union_tag(p))
            errors.append(FieldError(source, _line_of(doc, loc), ".".join(str(p) for p in loc), err["msg"]))
        raise SuiteError(errors) from None
    lines: dict[tuple[int, int], int] = {}
    for i, sc in enumerate(doc.get("scenarios") or []):
        line = _line_of(doc, ("scenarios", i))
        if line:
            lines[(i, -1)] = line
        for j, _ in enumerate(sc.get("steps") or [] if isinstance(sc, dict) else []):
            sline = _line_of(doc, ("scenarios", i, "steps", j))
            if sline:
                lines[(i, j)] = sline
    return LoadedSuite(suite, Path(source), lines, _line_of(doc, ("agent",)))


def load_suite_file(path: Path) -> LoadedSuite:
    try:
        raw = path.read_bytes()[: MAX_DOCUMENT_BYTES + 1]
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SuiteError([FieldError(str(path), None, "", f"cannot read: {e}")]) from None
    return parse_suite(text, str(path))


def suite_files(paths: list[Path]) -> list[Path]:
    """The suite files named: files as given, folders' *.yaml/*.yml (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file())
        else:
            out.append(p)
    return out
