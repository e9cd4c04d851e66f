"""Per-call variables: the placeholder substitution, load-time checks, filling per call."""

from __future__ import annotations

import json
import re

import pytest

from voxd.agents.loader import AgentLoadError, parse_agent
from voxd.agents.templates import for_call
from voxd.agents.variables import MAX_VALUE_CHARS, MAX_VARIABLES, call_values, coerce
from voxd.call import dtmf as kp
from voxd.core.placeholders import escape, fill, names
from voxd.providers.base import Message, TextDelta
from voxd.providers.llm.dialog import DialogEngine

AGENT = """
name: shop
greeting: "Hello {name}, your order {order_id} is on its way. {{not a placeholder}}"
prompt: 'You help {name}. Answer in JSON like {"ok": true}.'
variables:
  name: {default: there, description: first name}
  order_id: unknown
dialog:
  intents:
    - name: book
      examples: [book a table]
      slots: [{name: day, extract: weekday, prompt: "Which day suits you, {name}?"}]
      reply: "Booked {day} for {name}. {{day}} stays literal."
dtmf:
  collect:
    card: {prompt: "Type the number, {name}.", confirm: "{name}, I have {digits}."}
"""


def load(text: str = AGENT):  # type: ignore[no-untyped-def]
    return parse_agent(text, "agents/shop.yaml")


# ------------------------------------------------------------------ substitution
def test_fill_replaces_names_and_keeps_other_braces() -> None:
    assert fill("Hi {a}, {b}!", {"a": "Ada", "b": 3}) == "Hi Ada, 3!"
    assert fill('JSON {"x": 1} and { spaced }', {}) == 'JSON {"x": 1} and { spaced }'
    assert fill("{{a}} is {a}", {"a": "x"}) == "{a} is x"
    assert fill("}} and {{", {}) == "} and {"
    assert fill("{missing}!", {}) == "!"
    assert fill("{r.city} / {r.none}", {"r": {"city": "Oslo"}}) == "Oslo / "
    assert list(names("{a} {{b}} {c.d} {1x}")) == ["a", "c.d"]


def test_fill_is_not_a_format_string() -> None:
    # no attribute access, no indexing, no format specs: such text is not a placeholder
    values = {"a": "secret-free"}
    assert fill("{a.__class__} {a.__class__.__mro__}", values) == " "
    assert fill("{a[0]} {a!r} {a:>10}", values) == "{a[0]} {a!r} {a:>10}"
    assert fill("{0}", values) == "{0}"


def test_a_value_is_never_read_as_a_template() -> None:
    # a caller's value with braces in it stays as it was, through both fills
    partial = fill("Booked {day} for {name}", {"name": "{day} {{x}}"}, partial=True)
    assert fill(partial, {"day": "Tuesday"}) == "Booked Tuesday for {day} {{x}}"
    assert fill(escape("{a} }}"), {"a": "no"}) == "{a} }}"
    assert fill("{{keep}} {later} {name}", {"name": "N"}, partial=True) == "{{keep}} {later} N"


# ------------------------------------------------------------------ load time
def test_declared_variables_with_defaults_and_shorthand() -> None:
    cfg = load().config
    assert cfg.variables["name"].default == "there"
    assert cfg.variables["order_id"].default == "unknown"
    assert call_values(cfg.variables, {"name": "Ada", "extra": "kept"}) == {
        "name": "Ada", "order_id": "unknown", "extra": "kept"}


@pytest.mark.parametrize(("change", "field", "placeholder"), [
    (("{order_id} is on", "{order} is on"), "greeting", "order"),
    (("You help {name}", "You help {nmae}"), "prompt", "nmae"),
    (("Which day suits you, {name}?", "Which {time}?"), "dialog.intents.0.slots.0.prompt", "time"),
    (("Booked {day} for", "Booked {days} for"), "dialog.intents.0.reply", "days"),
    (("{name}, I have {digits}.", "I have {digit}."), "dtmf.collect.card.confirm", "digit"),
    (("Type the number, {name}.", "Type {digits}."), "dtmf.collect.card.prompt", "digits"),
])
def test_an_unknown_placeholder_is_refused_naming_file_line_and_field(
        change: tuple[str, str], field: str, placeholder: str) -> None:
    text = AGENT.replace(*change)
    assert text != AGENT
    with pytest.raises(AgentLoadError) as e:
        load(text)
    [err] = e.value.errors
    assert err.file == "agents/shop.yaml" and err.field == field
    assert f"{{{placeholder}}}" in err.message and "variables:" in err.message
    assert err.line is not None and placeholder in text.splitlines()[err.line - 1]


def test_runtime_names_are_known_where_they_exist() -> None:
    text = AGENT.replace("{{day}} stays literal.", "{result} {result.spoken} ok.")
    load(text)  # a reply may use its slots, {result} and {result.field}
    with pytest.raises(AgentLoadError, match=re.escape("greeting: unknown placeholder {result}")):
        load(AGENT.replace("is on its way.", "is {result}."))


def test_function_templates_take_parameters_and_variables() -> None:
    fn = """
functions:
  - name: track
    description: Track the parcel.
    parameters: {type: object, properties: {carrier: {type: string}}}
    http:
      url: "https://crm.example.com/track/{order_id}?carrier={carrier}"
      body: {order: "{order_id}", who: "{name}", carrier: "{carrier}"}
"""
    load(AGENT + fn)
    with pytest.raises(AgentLoadError) as e:
        load(AGENT + fn.replace('who: "{name}"', 'who: "{customer}"'))
    assert e.value.errors[0].field == "functions.0.http.body.who"


@pytest.mark.parametrize("bad", ["9lives", "has-dash", "x" * 65])
def test_a_bad_variable_name_is_refused(bad: str) -> None:
    with pytest.raises(AgentLoadError, match="variable name"):
        load(f"name: x\nvariables:\n  {bad}: v\n")


def test_too_many_variables_are_refused() -> None:
    many = "".join(f"  v{i}: x\n" for i in range(MAX_VARIABLES + 1))
    with pytest.raises(AgentLoadError, match=f"at most {MAX_VARIABLES}"):
        load("name: x\nvariables:\n" + many)


def test_untrusted_values_are_bounded() -> None:
    values, problems = coerce({"ok": "a", "n": 3, "b": True, "bad name": "x", "obj": {"x": 1},
                               "long": "x" * (MAX_VALUE_CHARS + 1)})
    assert values == {"ok": "a", "n": "3", "b": "true"}
    assert len(problems) == 3
    assert coerce("nope") == ({}, ["variables is not an object"])


# ------------------------------------------------------------------ per call
def test_for_call_fills_greeting_prompt_menus_and_leaves_slots_for_the_dialog() -> None:
    cfg = for_call(load().config, call_values(load().config.variables, {"name": "Ada {day}"}))
    assert cfg.greeting == "Hello Ada {day}, your order unknown is on its way. {not a placeholder}"
    assert cfg.prompt == 'You help Ada {day}. Answer in JSON like {"ok": true}.'
    assert cfg.dtmf.collect["card"].prompt == "Type the number, Ada {day}."
    defaults = for_call(load().config, call_values(load().config.variables, None))
    assert defaults.greeting is not None and defaults.greeting.startswith("Hello there, your order unknown")


async def test_dialog_replies_get_variables_then_slots() -> None:
    cfg = for_call(load().config, {"name": "Ada {day}"})
    engine = DialogEngine(cfg.dialog)

    async def reply(text: str) -> str:
        return "".join(e.text for e in [x async for x in engine.stream([Message("user", text)], [])]
                       if isinstance(e, TextDelta))

    assert await reply("book a table") == "Which day suits you, Ada {day}?"
    assert await reply("tuesday") == "Booked Tuesday for Ada {day}. {day} stays literal."


def test_collect_confirm_gets_variables_then_digits() -> None:
    cfg = for_call(load().config, {"name": "Bo"})
    machine = kp.KeypadMachine(cfg.dtmf)
    said = [a.text for a in machine.start_collect("card", 0.0) if isinstance(a, kp.Say)]
    for d in "42#":
        said += [a.text for a in machine.digit(d, 0.1) if isinstance(a, kp.Say)]
    assert said[0] == "Type the number, Bo." and "Bo, I have 4 2." in said


def test_an_inbound_lookup_the_daemon_would_refuse_is_refused_at_load_time() -> None:
    from voxd.core.egress import EgressPolicy
    from voxd.core.secrets import Outbound

    text = "name: x\ninbound_lookup:\n  url: http://127.0.0.1:9/lookup\n  secret: crm\n"
    with pytest.raises(AgentLoadError) as e:
        parse_agent(text, "agents/x.yaml", outbound=Outbound())
    assert [(err.line, err.field) for err in e.value.errors] == [(3, "inbound_lookup.url"), (4, "inbound_lookup.secret")]
    assert "egress.allow" in e.value.errors[0].message
    allowed = Outbound(policy=EgressPolicy.open_to("127.0.0.0/8", uses=["lookups"]))
    assert parse_agent(text.replace("  secret: crm\n", ""), "agents/x.yaml", outbound=allowed).name == "x"


def test_http_function_templates_take_the_calls_variables() -> None:
    from voxd.core.redact import Redactor
    from voxd.core.secrets import SecretBook
    from voxd.tools.http_functions import HttpFunctionRunner

    fn = parse_agent(AGENT + """
functions:
  - name: track
    description: Track the parcel.
    parameters: {type: object, properties: {carrier: {type: string}, name: {type: string}}}
    http:
      url: "https://crm.example.com/track/{order_id}?carrier={carrier}"
      body: {order: "{order_id}", who: "{name}", carrier: "{carrier}"}
""").config.functions[0]
    assert fn.http is not None

    async def no_session() -> None:
        raise AssertionError("not sent")

    runner = HttpFunctionRunner("track", fn.http, None, no_session, SecretBook(), Redactor())  # type: ignore[arg-type]
    url, _, body, _ = runner.build({"carrier": "ups", "name": "from the model"}, {"order_id": "A/1 2", "name": "Ada"})
    assert url == "https://crm.example.com/track/A%2F1%202?carrier=ups"
    assert body is not None and json.loads(body) == {"order": "A/1 2", "who": "from the model", "carrier": "ups"}
