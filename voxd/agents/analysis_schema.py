"""The ``analysis:`` block of agent YAML: what the post-call analysis extracts.

``schema`` is a JSON Schema (an object schema) of the ``extracted`` fields; it is itself
checked at load time (``jsonschema``'s metaschema for its declared draft, 2020-12 when
none is declared), so a typo in a type name fails the agent, not the first call.
"""

from __future__ import annotations

from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_SCHEMA_BYTES = 16_384


class AnalysisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    enabled: bool = Field(True, description="Run the post-call analysis when a call ends.")
    fields_schema: dict[str, Any] | None = Field(
        None, alias="schema",
        description="JSON Schema (an object schema) of `extracted`: the fields to take out of the call.")
    instructions: str = Field("", max_length=4000, description="Told to the model that fills the analysis.")
    outcomes: dict[str, str | None] = Field(
        default_factory=dict,
        description="Outcome labels; each maps to the dialog intent whose completion means it (null: only a model "
                    "decides it). A model chooses among these labels (and default_outcome).")
    default_outcome: str = Field("none", pattern=r"^[a-z][a-z0-9_]{0,63}$",
                                 description="The outcome when no listed one happened.")
    engine: Literal["auto", "llm", "dialog"] = Field(
        "auto", description="Who fills summary, outcome and extracted: the agent's LLM with structured output (llm), "
                            "the dialog engine's slots and a template (dialog), or llm when the agent's LLM "
                            "supports structured output, else dialog (auto). An agent without an analysis: "
                            "block gets the dialog's (no model, no cost).")
    sentiment: Literal["vader", "llm"] = Field("vader", description="Per caller turn and overall: VADER or the LLM.")
    summary_template: str = Field(
        "{agent} call, {turns} turns, {duration}: the caller asked about {intents}. Outcome: {outcome}.{details}",
        max_length=1000, description="The summary written without a model (dialog engine).")

    @field_validator("fields_schema")
    @classmethod
    def _valid_schema(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        import json

        if len(json.dumps(v, default=str)) > MAX_SCHEMA_BYTES:
            raise ValueError(f"the analysis schema is larger than {MAX_SCHEMA_BYTES} bytes")
        if v.get("type") != "object":
            raise ValueError("the analysis schema must be an object schema (type: object)")
        try:
            jsonschema.validators.validator_for(v, default=jsonschema.Draft202012Validator).check_schema(v)
        except jsonschema.SchemaError as e:
            where = "/".join(str(p) for p in e.absolute_path) or "(top)"
            raise ValueError(f"the analysis schema is not a valid JSON Schema at {where}: {e.message}") from None
        return v

    @field_validator("outcomes")
    @classmethod
    def _labels(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        import re

        for name in v:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
                raise ValueError(f"outcome {name!r}: lower-case letters, digits and _ only")
        return v

    def outcome_labels(self) -> list[str]:
        return list(dict.fromkeys([*self.outcomes, self.default_outcome]))
