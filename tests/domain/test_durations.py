"""Go-style durations (parse_duration)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from m3stripe.api.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1h30m15s", 5415),
        ("250ms", 0.25),
        ("1m500ms", 60.5),
        ("1.5h", 5400),
        ("0s", 0),
        ("720h", 720 * 3600),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "5d", "1h 30m", " 5s", "5s ", "-5s", "s", "1.h", "5sec", "5M", "abc"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text", ["99999999999999h", "9" * 30 + "h", "2562048h"])
def test_a_duration_beyond_go_durations_is_refused_not_overflowed(text: str) -> None:
    with pytest.raises(ValueError, match=r"maximum|too long"):
        parse_duration(text)


def test_a_duration_longer_than_its_maximum_names_the_maximum() -> None:
    with pytest.raises(ValueError, match="maximum of 24h"):
        parse_duration("25h", maximum=timedelta(hours=24))
    assert parse_duration("24h", maximum=timedelta(hours=24)) == timedelta(hours=24)
