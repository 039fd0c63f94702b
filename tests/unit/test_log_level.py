"""AGENTSIGHT_LOG: any case of a level name works; anything else is said and WARNING is used
(before, "debug" crashed every actor at start)."""

from __future__ import annotations

import logging

import pytest

from agentsight.runtime.actor import log_level


@pytest.mark.parametrize("value, level", [("", logging.WARNING), ("debug", logging.DEBUG), ("Info", logging.INFO),
                                          (" ERROR ", logging.ERROR), ("warning", logging.WARNING), ("15", 15)])
def test_levels_in_any_case(value: str, level: int) -> None:
    assert log_level(value) == (level, "")


@pytest.mark.parametrize("value", ["loud", "verbose", "-", "debug2"])
def test_a_value_that_is_no_level_falls_back_to_warning_and_is_reported(value: str) -> None:
    assert log_level(value) == (logging.WARNING, value)
