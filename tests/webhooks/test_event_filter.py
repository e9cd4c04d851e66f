"""The API's `events:` filter is derived from the event catalogue, not a copy of it."""

from __future__ import annotations

from typing import get_args

from voxd.api.webhooks import EventFilter, WebhookCreate
from voxd.webhooks.events import EVENT_TYPES


def test_every_event_type_but_the_test_send_is_subscribable() -> None:
    assert set(get_args(EventFilter)) == {"*", *EVENT_TYPES} - {"webhook.test"}


def test_the_schema_lists_them_as_an_enum() -> None:
    schema = WebhookCreate.model_json_schema()
    enum = schema["properties"]["events"]["items"]["enum"]
    assert enum[0] == "*" and set(enum[1:]) == set(EVENT_TYPES) - {"webhook.test"}
