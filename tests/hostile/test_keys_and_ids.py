"""Keys and ids from hostile input, below the operator: key format, Bill ids in m3ter URLs, quiet HTTP loggers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from m3stripe.adapters.m3ter_source import M3terSource
from m3stripe.adapters.m3ter_token import M3terCredentials
from m3stripe.kube.credentials import MAX_KEY_BYTES, key_format_problem
from m3stripe.testing.m3ter_emulator import M3terEmulator

ORG, CLIENT, SECRET = "org-ids", "client-ids", "secret-ids-value"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"sk_test_abc\ndef", "line break at position 12"),
        (b"sk_test_abc\r\ndef", "line break"),
        (b"sk_test_\xff\xfe", "binary data"),
        ("sk_test_é".encode(), "non-ASCII character at position 9"),
        ("sk_test_\u200b".encode(), "non-ASCII"),
        (b"sk_test_" + b"A" * 10240, "10248 bytes long"),
        (b"sk_test_a b", "whitespace or a control character at position 10"),
        (b"sk_test_a\tb", "whitespace"),
        (b"sk_test_a\x00b", "control character"),
        (b"sk_test_a\x7fb", "control character"),
    ],
)
def test_a_key_that_cannot_travel_in_an_http_header_is_refused_with_what_is_wrong(raw: bytes, says: str) -> None:
    problem = key_format_problem(raw)
    assert problem is not None and says in problem
    assert raw.decode("utf-8", "ignore")[:11] not in problem  # never the key itself


@pytest.mark.parametrize("raw", [b"sk_test_51abcDEF", b"rk_live_xyz\n", b"  sk_test_1  ", b"sk_test_" + b"a" * 200])
def test_a_well_formed_key_passes_surrounding_whitespace_included(raw: bytes) -> None:
    assert key_format_problem(raw) is None


def test_the_length_limit_is_on_the_key_not_on_its_surrounding_whitespace() -> None:
    assert key_format_problem(b"sk_test_" + b"a" * (MAX_KEY_BYTES - 8) + b"\n\n") is None
    assert key_format_problem(b"sk_test_" + b"a" * (MAX_KEY_BYTES - 7)) is not None


@pytest.fixture
async def emulator() -> AsyncIterator[M3terEmulator]:
    async with M3terEmulator() as running:
        running.add_client(CLIENT, SECRET, ORG)
        yield running


@pytest.fixture
async def source(emulator: M3terEmulator) -> AsyncIterator[M3terSource]:
    created = M3terSource(M3terCredentials(ORG, CLIENT, SECRET), base_url=emulator.url, max_retries=0)
    yield created
    await created.aclose()


@pytest.mark.parametrize("bill_id", ["../../accounts", "..", "a/b", "x?pageSize=1", "x#y", "%2e%2e"])
async def test_a_bill_id_stays_one_path_segment_of_the_bills_url(
    emulator: M3terEmulator, source: M3terSource, bill_id: str
) -> None:
    assert await source.get_bill(bill_id) is None
    paths = [r.path for r in emulator.requests if r.path.startswith("/organizations/")]
    assert all(p.startswith(f"/organizations/{ORG}/bills/") for p in paths), paths
    if bill_id != "..":  # a dot segment is not sent at all
        assert paths, "the request reached m3ter"


async def test_a_403_for_one_bill_is_not_an_authentication_failure(
    emulator: M3terEmulator, source: M3terSource
) -> None:
    await source.check()  # a token first: the fault must hit the Bill request itself
    emulator.inject_server_errors(1, status=403)
    assert await source.get_bill("bill-forbidden") is None  # no M3terAuthError raised
    await source.check()  # the credentials still work


def test_http_library_loggers_stay_at_warning_whatever_the_verbosity() -> None:
    import kopf

    from m3stripe.kube.handlers import HTTP_LOGGERS, pin_http_loggers

    kopf.configure(verbose=True)
    try:
        pin_http_loggers()
        for name in (*HTTP_LOGGERS, "httpcore.http11", "httpcore.connection", "urllib3.connectionpool"):
            assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert {"httpcore", "httpx", "urllib3", "aiohttp", "stripe", "m3ter", "hpack"} <= set(HTTP_LOGGERS)
    finally:
        logging.getLogger().setLevel(logging.WARNING)
