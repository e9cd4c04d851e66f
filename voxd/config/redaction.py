"""The ``redaction:`` section: personal data taken out of what voxd writes (voxd/core/pii.py).

On by default, for every organisation: a platform that stores call transcripts should not
keep card numbers or SSNs unless someone chose to. An organisation can turn it off, choose
detectors, and add patterns of its own (checked here, at load).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voxd.core.pii import MAX_PATTERNS, CustomPattern, OrgRedaction, PatternError, Redaction

Detector = Literal["cards", "ssn", "emails", "phones"]


def _all_detectors() -> list[Detector]:
    return ["cards", "ssn", "emails", "phones"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedactionPattern(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="Names the pattern; [name] replaces a match by default.")
    regex: str = Field(description="A Python regular expression, at most 256 characters: no back-references, "
                       "look-arounds, nested or unbounded-and-stacked repetitions (voxd/core/pii.py).")
    replacement: str | None = Field(None, max_length=64, description="Default: [name].")

    @field_validator("regex")
    @classmethod
    def _safe(cls, v: str) -> str:
        try:
            CustomPattern.compile("pattern", v)
        except PatternError as e:
            raise ValueError(str(e)) from None
        return v

    def compiled(self) -> CustomPattern:
        return CustomPattern.compile(self.name, self.regex, self.replacement)


class OrgRedactionConfig(_Model):
    enabled: bool | None = Field(None, description="Default: redaction.enabled.")
    detectors: list[Detector] | None = Field(None, description="Default: redaction.detectors.")
    patterns: list[RedactionPattern] = Field(default_factory=list, max_length=MAX_PATTERNS,
                                             description="Added to redaction.patterns for this organisation.")


class RedactionConfig(_Model):
    enabled: bool = Field(True, description="Redact transcripts, tool calls, call metadata, analysis, webhook "
                          "payloads, function logs and log lines before they are written.")
    detectors: list[Detector] = Field(default_factory=_all_detectors)
    patterns: list[RedactionPattern] = Field(default_factory=list, max_length=MAX_PATTERNS,
                                             description="Patterns of every organisation's.")
    orgs: dict[str, OrgRedactionConfig] = Field(default_factory=dict, description="Per organisation (by id).")

    def policy(self) -> Redaction:
        base = tuple(p.compiled() for p in self.patterns)
        default = OrgRedaction(self.enabled, frozenset(self.detectors), base)
        orgs = {
            org: OrgRedaction(
                self.enabled if o.enabled is None else o.enabled,
                frozenset(self.detectors if o.detectors is None else o.detectors),
                base + tuple(p.compiled() for p in o.patterns))
            for org, o in self.orgs.items()
        }
        return Redaction(default, orgs)
