"""The control API fixture of tests/api, for the organisation tests."""

from tests.api.conftest import api  # noqa: F401 (a fixture, found by name)
