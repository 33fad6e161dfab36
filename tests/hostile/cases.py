"""The hostile-input corpus: each case is an input and the outcome it must produce.

A case is one StripeIntegration (its spec, annotations, a status it was restored with, its Stripe key,
the m3ter Bills it reads). Its outcome is a list of checks on what the operator shows a person: a
condition reason and message, a Kubernetes event, an error event on one Bill, the run's status.
`test_corpus.py` creates every case at once against one operator process and waits for all outcomes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The one valid Stripe test key (registered with the emulator) and the m3ter credentials every case uses.
GOOD_KEY = "sk_test_51hostileGoodKEY0000"
CONTROL_KEY = "sk_test_51hostileControlKEY0000"
M3TER_CLIENT, M3TER_SECRET = "hostile-client", "hostile-m3ter-secret-9f3a"
CONTROL_CLIENT, CONTROL_SECRET = "control-client", "control-m3ter-secret-7c21"
EMPTY_ORG = "org-hostile-empty"  # no Bills: passes run and complete
FILTER_ORG = "org-hostile-filter"  # two Accounts with Bills, read by the filter cases

BIG = 220 * 1024
MANY_IDS = 500  # short ids: within the length bound, beyond the count bound


@dataclass(frozen=True)
class Check:
    """One observable outcome. `kind`: ready, event, bill_error, run, sent, status, absent_event."""

    kind: str
    reason: str = ""
    contains: tuple[str, ...] = ()
    type: str = "Warning"
    value: Any = None


def ready(reason: str, *contains: str, status: str = "False") -> Check:
    return Check("ready", reason, contains, value=status)


def event(reason: str, *contains: str, type: str = "Warning") -> Check:
    return Check("event", reason, contains, type=type)


def no_event(reason: str) -> Check:
    return Check("absent_event", reason)


def bill_error(bill: str, *contains: str) -> Check:
    """An integration.validation.error on the named Bill (a key of Case.bills), naming the field."""
    return Check("bill_error", bill, contains)


def sent(bill: str, lines: int | None = None, items: int | None = None) -> Check:
    """Stripe holds the named Bill: an invoice (with `lines` lines) or `items` pending invoice items."""
    return Check("sent", bill, value=(lines, items))


def not_sent(bill: str) -> Check:
    return Check("not_sent", bill)


def run(status: str) -> Check:
    return Check("run", status)


def status_is(predicate: Callable[[dict[str, Any]], bool], what: str) -> Check:
    return Check("status", what, value=predicate)


VALID: Any = object()  # a valid spec (with `spec_patch` merged into it)


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    outcome: tuple[Check, ...]
    spec: Any = VALID  # anything else is the whole spec, exactly as stored
    spec_patch: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] | None = None
    key: bytes | None = None  # the Stripe Secret's apiKey bytes; None: the good key
    m3ter_secret: str | None = None
    org: str = EMPTY_ORG
    mapped: bool = True  # each Account of the case's organization has a Stripe Customer
    # Bills in the case's own organization: name -> (lines, corruption applied to the JSON m3ter serves)
    bills: dict[str, tuple[list[dict[str, Any]], Callable[[dict[str, Any]], None] | None]] = field(default_factory=dict)
    xfail: str | None = None
    secrets: tuple[str, ...] = ()  # extra secret texts that must never show anywhere
    # A second step, once `outcome` holds: these annotations are set, then `then_outcome` must hold.
    then: dict[str, Any] = field(default_factory=dict)
    then_outcome: tuple[Check, ...] = ()


def _spec(**patch: Any) -> dict[str, Any]:
    return patch


def invalid(id: str, what: str, patch: dict[str, Any], *contains: str) -> Case:
    """A spec the operator must refuse with Ready=False InvalidSpec naming the field (and a Warning event)."""
    return Case(
        id,
        what,
        (ready("InvalidSpec", *contains), event("InvalidSpec", *contains)),
        spec_patch=patch,
    )


def whole(id: str, what: str, spec: Any, *contains: str) -> Case:
    return Case(id, what, (ready("InvalidSpec", *contains), event("InvalidSpec", *contains)), spec=spec)


SPEC_CASES = [
    whole("spec-list", "spec is a list", ["destination", "Stripe"], "spec: must be an object of fields, not a list"),
    whole("spec-string", "spec is a string", "destination: Stripe", "spec: must be an object", "not a string"),
    whole("spec-number", "spec is a number", 42, "spec: must be an object", "not a number"),
    whole("spec-bool", "spec is a boolean", True, "spec: must be an object", "not a boolean"),
    whole("spec-null", "spec is null", None, "spec.destination: required field is missing"),
    whole("spec-empty", "spec is empty", {}, "spec.destination: required field is missing", "spec.m3ter"),
    invalid(
        "sync-huge",
        "syncInterval overflowing date arithmetic",
        {"syncInterval": "99999999999999h"},
        "spec.syncInterval",
    ),
    invalid("sync-400-digits", "syncInterval of 400 digits", {"syncInterval": "9" * 400 + "h"}, "spec.syncInterval"),
    invalid("threshold-text", "autoDisableThreshold as text", {"autoDisableThreshold": "3"}, "autoDisableThreshold"),
    invalid(
        "threshold-bool", "autoDisableThreshold as a boolean", {"autoDisableThreshold": True}, "autoDisableThreshold"
    ),
    invalid("threshold-float", "autoDisableThreshold as 3.0", {"autoDisableThreshold": 3.0}, "autoDisableThreshold"),
    invalid(
        "history-limit-text",
        "runHistoryLimit as a number in a string",
        {"runHistoryLimit": "5"},
        "spec.runHistoryLimit",
    ),
    invalid("sync-25h", "syncInterval above the maximum", {"syncInterval": "25h"}, "spec.syncInterval", "24h"),
    invalid("sync-5s", "syncInterval below the minimum", {"syncInterval": "5s"}, "spec.syncInterval", "10s"),
    invalid("sync-space", "syncInterval with a space", {"syncInterval": "5 m"}, "spec.syncInterval"),
    invalid("sync-empty", "syncInterval empty", {"syncInterval": ""}, "spec.syncInterval"),
    invalid("sync-negative", "syncInterval negative", {"syncInterval": "-5m"}, "spec.syncInterval"),
    invalid("sync-days", "syncInterval in days (not Go)", {"syncInterval": "1d"}, "spec.syncInterval"),
    invalid("sync-int", "syncInterval as a number", {"syncInterval": 300}, "spec.syncInterval"),
    invalid(
        "retention-huge",
        "eventRetention overflowing date arithmetic",
        {"eventRetention": "99999999999999h"},
        "spec.eventRetention",
    ),
    invalid(
        "retention-400-digits",
        "eventRetention of 400 digits",
        {"eventRetention": "9" * 400 + "h"},
        "spec.eventRetention",
    ),
    invalid("retention-30s", "eventRetention below the minimum", {"eventRetention": "30s"}, "spec.eventRetention"),
    invalid("retention-exp", "eventRetention in exponent form", {"eventRetention": "1e9h"}, "spec.eventRetention"),
    invalid("history-0", "runHistoryLimit 0", {"runHistoryLimit": 0}, "spec.runHistoryLimit"),
    invalid("history-huge", "runHistoryLimit 10^30", {"runHistoryLimit": 10**30}, "spec.runHistoryLimit"),
    invalid("history-text", "runHistoryLimit as text", {"runHistoryLimit": "ten"}, "spec.runHistoryLimit"),
    invalid("threshold-0", "autoDisableThreshold 0", {"autoDisableThreshold": 0}, "spec.autoDisableThreshold"),
    invalid("threshold-neg", "autoDisableThreshold -1", {"autoDisableThreshold": -1}, "spec.autoDisableThreshold"),
    invalid("rps-0", "requestsPerSecond 0", {"requestsPerSecond": 0}, "spec.requestsPerSecond"),
    invalid("rps-huge", "requestsPerSecond 10^9", {"requestsPerSecond": 10**9}, "spec.requestsPerSecond"),
    invalid("lines-0", "maxLinesPerInvoice 0", {"maxLinesPerInvoice": 0}, "spec.maxLinesPerInvoice"),
    invalid("lines-float", "maxLinesPerInvoice 1e6", {"maxLinesPerInvoice": 1e6}, "spec.maxLinesPerInvoice"),
    invalid("dest-lower", "destination in lower case", {"destination": "stripe"}, "spec.destination", "'stripe'"),
    invalid("dest-number", "destination as a number", {"destination": 5}, "spec.destination"),
    invalid("dest-null", "destination null", {"destination": None}, "spec.destination"),
    invalid("entity-invoice", "entityType Invoice", {"entityType": "Invoice"}, "spec.entityType"),
    invalid("sort-lower", "sortLineItemsBy in lower case", {"sortLineItemsBy": "subtotal"}, "spec.sortLineItemsBy"),
    invalid(
        "collection-snake",
        "collectionMethod in snake case",
        {"collectionMethod": "send_invoice"},
        "spec.collectionMethod",
    ),
    invalid(
        "excluded-string",
        "excludedLineItemTypes as a string",
        {"excludedLineItemTypes": "USAGE"},
        "spec.excludedLineItemTypes",
    ),
    invalid(
        "excluded-unknown",
        "excludedLineItemTypes with an unknown type",
        {"excludedLineItemTypes": ["USAGE", "TIP"]},
        "spec.excludedLineItemTypes[1]",
        "'TIP'",
    ),
    invalid("ids-string", "accountIds as a string", {"accountIds": "a1"}, "spec.accountIds"),
    invalid("ids-numbers", "accountIds as numbers", {"accountIds": [1, 2]}, "spec.accountIds[0]"),
    invalid("ids-1001", "1001 accountIds", {"accountIds": [f"a{i}" for i in range(1001)]}, "spec.accountIds"),
    invalid("ids-path", "accountIds with a path", {"accountIds": ["../../x"]}, "spec.accountIds[0]"),
    invalid(
        "ids-overlap",
        "an account both allowed and restricted",
        {"accountIds": ["a1", "a2"], "restrictedAccountIds": ["a2"]},
        "spec.restrictedAccountIds",
        "a2",
    ),
    invalid("cred-string", "credentialRef as a string", {"credentialRef": "stripe"}, "spec.credentialRef"),
    invalid(
        "cred-bad-name",
        "credentialRef name not DNS",
        {"credentialRef": {"name": "Bad_Name"}},
        "spec.credentialRef.name",
    ),
    invalid(
        "cred-bad-key",
        "credentialRef key with '/'",
        {"credentialRef": {"name": "s", "key": "a/b"}},
        "spec.credentialRef.key",
    ),
    invalid(
        "cred-long-name", "credentialRef name of 300", {"credentialRef": {"name": "x" * 300}}, "spec.credentialRef.name"
    ),
    invalid("m3ter-string", "m3ter as a string", {"m3ter": "org"}, "spec.m3ter"),
    invalid(
        "org-path",
        "organizationId with a path",
        {"m3ter": {"organizationId": "../../accounts", "credentialsRef": {"name": "m3ter"}}},
        "spec.m3ter.organizationId",
    ),
    invalid(
        "org-empty",
        "organizationId empty",
        {"m3ter": {"organizationId": "", "credentialsRef": {"name": "m3ter"}}},
        "spec.m3ter.organizationId",
    ),
    invalid(
        "org-no-creds",
        "m3ter without credentialsRef",
        {"m3ter": {"organizationId": EMPTY_ORG}},
        "spec.m3ter.credentialsRef: required field is missing",
    ),
    invalid(
        "email-bad",
        "a notification user that is no email",
        {"integrationDisabledNotificationUsers": ["not-an-email"]},
        "spec.integrationDisabledNotificationUsers[0]",
    ),
    invalid(
        "email-string",
        "notification users as a string",
        {"integrationDisabledNotificationUsers": "a@b.c"},
        "spec.integrationDisabledNotificationUsers",
    ),
    invalid(
        "product-price", "priceDataProductId of a price", {"priceDataProductId": "price_123"}, "spec.priceDataProductId"
    ),
    invalid(
        "po-41", "poNumberCustomField of 41 characters", {"poNumberCustomField": "x" * 41}, "spec.poNumberCustomField"
    ),
    invalid("po-empty", "poNumberCustomField empty", {"poNumberCustomField": ""}, "spec.poNumberCustomField"),
    invalid(
        "po-items",
        "poNumberCustomField in items mode",
        {"poNumberCustomField": "PO", "createStripeInvoice": False},
        "spec.poNumberCustomField",
        "createStripeInvoice",
    ),
    invalid("due-auto", "sendDueDate with automatic collection", {"sendDueDate": True}, "spec.collectionMethod"),
    invalid(
        "typo-field",
        "an unknown (misspelt) field",
        {"createStripeInvoce": True},
        "spec.createStripeInvoce: unknown field",
    ),
    invalid("suspend-maybe", "suspend as 'maybe'", {"suspend": "maybe"}, "spec.suspend"),
    invalid("approval-2", "onlySendBillOnApproval 2", {"onlySendBillOnApproval": 2}, "spec.onlySendBillOnApproval"),
    invalid("filter-long", "a 5000-character filter", {"accountFilter": "a" * 5000}, "spec.accountFilter"),
    invalid("filter-blank", "a whitespace-only filter", {"accountFilter": "  \t "}, "spec.accountFilter: is blank"),
    invalid(
        "filter-typo-root",
        "a filter naming a field no Account has (customFeilds)",
        {"accountFilter": 'customFeilds.country == "UK"'},
        "'customFeilds.country' is not a field of an m3ter Account",
    ),
    # Issue 18: ordering an Account's own (text) field by a number is never what it says: refused, not warned.
    invalid(
        "filter-currency-vs-number",
        "a text field that never holds a numeral ordered by a number",
        {"accountFilter": "currency > 5"},
        "spec.accountFilter: 'currency > 5' orders the text field currency by a number",
    ),
    invalid(
        "filter-country-ordered-by-number",
        "address.country >= 5",
        {"accountFilter": "address.country >= 5"},
        "'address.country >= 5' orders the text field address.country by a number",
    ),
    invalid(
        "filter-typo-address",
        "a filter naming an address key m3ter has not",
        {"accountFilter": 'address.contry == "UK"'},
        "m3ter addresses have no 'contry'",
    ),
    invalid(
        "filter-deep",
        "a filter nested 200 deep",
        {"accountFilter": "(" * 200 + "a == 1" + ")" * 200},
        "spec.accountFilter",
    ),
    invalid(
        "filter-syntax", "a filter ending in an operator", {"accountFilter": "name == "}, "spec.accountFilter", "column"
    ),
    invalid("filter-number", "a filter that is a number", {"accountFilter": 5}, "spec.accountFilter"),
    invalid("filter-nul", "a filter with a NUL character", {"accountFilter": 'name == "a"\x00'}, "spec.accountFilter"),
    invalid(
        "filter-smart-quotes",
        "a filter with typographic quotes",
        {"accountFilter": "name == \u201cUK\u201d"},
        "spec.accountFilter",
    ),
]


def _filter(id: str, what: str, expression: str, *contains: str) -> Case:
    return Case(
        id,
        what,
        (event("AccountFilterWarning", "spec.accountFilter", *contains), run("")),
        spec_patch={"accountFilter": expression},
        org=FILTER_ORG,
    )


FILTER_CASES = [
    _filter(
        "filter-absent-field",
        "a filter naming a custom field no Account has",
        'customFields.countyr == "UK"',
        "'customFields.countyr' is absent on all",
    ),
    _filter(
        "filter-absent-kept",
        "a negated filter on a field no Account has (drops every Account)",
        "NOT customFields.regoin == null",
        "'customFields.regoin' is absent",
    ),
    _filter(
        "filter-text-vs-number", "a number field compared with text", 'customFields.tier > "gold"', "compares text"
    ),
    _filter(
        "filter-country-vs-number",
        "a text custom field compared with a number",
        "customFields.country == 44",
        "'customFields.country == 44'",
    ),
]


def _key(id: str, what: str, key: bytes, *contains: str) -> Case:
    return Case(
        id,
        what,
        (ready("InvalidKeyFormat", *contains), event("InvalidKeyFormat", *contains)),
        key=key,
    )


KEY_CASES = [
    _key("key-newline", "a key with a line break inside", b"sk_test_51hostileNL\nsk_test_second", "line break"),
    _key("key-crlf", "a key with CRLF inside", b"sk_test_51hostileCR\r\nX", "line break"),
    _key("key-binary", "a key of binary bytes", b"sk_test_51hostile\xff\xfe\x00\x81", "binary data"),
    _key("key-accent", "a key with a non-ASCII letter", "sk_test_51hostileé".encode(), "non-ASCII"),
    _key("key-emoji", "a key with an emoji", "sk_test_51hostile🔑".encode(), "non-ASCII"),
    _key("key-zero-width", "a key with a zero-width space", "sk_test_51hostile\u200bZW".encode(), "non-ASCII"),
    _key("key-10kb", "10 KB of text", b"sk_test_51hostileBIG" + b"A" * 10240, "bytes long"),
    _key(
        "key-pem",
        "a certificate pasted instead of the key",
        b"-----BEGIN CERTIFICATE-----\nMIIB" + b"Q" * 60 + b"\n-----END CERTIFICATE-----",
        "whitespace or a control character at position 11",
    ),
    _key("key-space", "a key with a space inside", b"sk_test_51hostile SP", "whitespace"),
    _key("key-tab", "a key with a tab inside", b"sk_test_51hostile\tTB", "whitespace"),
    _key("key-nul", "a key with a NUL byte", b"sk_test_51hostile\x00NUL", "control character"),
    _key("key-publishable", "a publishable key", b"pk_test_51hostilePublishable", "not a Stripe secret"),
    _key("key-word", "a word instead of a key", b"changeme", "not a Stripe secret"),
    Case(
        "key-empty",
        "an empty key",
        (ready("SecretKeyMissing", "'apiKey'"),),
        key=b"",
    ),
    Case(
        "key-whitespace",
        "a key of whitespace only",
        (ready("SecretKeyMissing", "'apiKey'"),),
        key=b"  \n\t ",
    ),
    Case(
        "m3ter-secret-newline",
        "an m3ter secret with a line break",
        (ready("M3terAuthFailed", "m3ter refused the credentials"),),
        m3ter_secret="hostile-m3ter\nsecret",
        secrets=("hostile-m3ter",),
    ),
]

_GOOD_LINE = {"line_item_type": "USAGE", "subtotal": "10.00", "description": "good"}
R = "m3stripe.dev/resolve"
P = "m3stripe.dev/replay"
Q = "m3stripe.dev/requested-at"
E = "m3stripe.dev/reenable"


def _short(field_name: str) -> Check:
    return status_is(
        lambda s: len(str(s.get(field_name) or "")) < 64, f"status.{field_name} holds a short marker, not the value"
    )


ANNOTATION_CASES = [
    Case(
        "resolve-unknown",
        "resolve names an event id that is not open",
        (event("UnknownEventIds", "evt-000000000000"),),
        annotations={R: "evt-000000000000"},
    ),
    Case(
        "resolve-nonsense",
        "resolve names garbage beside an id",
        (event("UnknownEventIds", "'nonsense'"),),
        annotations={R: "evt-111111111111, nonsense"},
    ),
    Case(
        "resolve-ALL",
        "resolve=ALL in capitals means all",
        (event("MissingAccountMapping"), status_is(lambda s: len(s.get("openEvents") or ()) == 1, "one open event")),
        org="org-resolve-all",
        mapped=False,
        bills={"unmapped": ([_GOOD_LINE], None)},
        then={R: "ALL"},
        then_outcome=(
            event("EventsResolved", "1 error event(s) marked as actioned", type="Normal"),
            status_is(lambda s: not s.get("openEvents"), "no open event left"),
            no_event("UnknownEventIds"),
        ),
    ),
    Case(
        "resolve-big",
        "resolve of 220 KB",
        (event("AnnotationRefused", R, "characters long"), _short("lastHandledResolve")),
        annotations={R: "evt-" + "a" * BIG},
    ),
    Case(
        "resolve-many",
        "resolve naming 500 ids",
        (event("AnnotationRefused", R, f"names {MANY_IDS} ids"), _short("lastHandledResolve")),
        annotations={R: ",".join(f"e{i}" for i in range(MANY_IDS))},
    ),
    Case(
        "resolve-int",
        "resolve as a number",
        (event("AnnotationRefused", R, "must be a string"),),
        annotations={R: 5},
    ),
    Case(
        "resolve-commas",
        "resolve of commas only",
        (event("UnknownEventIds", "names no event id"), no_event("EventsResolved")),
        annotations={R: ",,,"},
    ),
    Case(
        "replay-commas",
        "replay of commas only",
        (event("ReplayRefused", "names no Bill id"), run("COMPLETE")),
        annotations={P: ",,,,"},
    ),
    Case(
        "replay-token-only",
        "replay of a re-trigger token and no id",
        (event("ReplayRefused", "names no Bill id"), run("COMPLETE")),
        annotations={P: "#t"},
    ),
    Case(
        "plan-replay",
        "a replay while spec.mode is Plan",
        (
            event("ReplayRefused", "spec.mode is Plan", "Switch spec.mode to Send first"),
            ready("PlanOnly", status="True"),
            status_is(lambda s: s.get("lastHandledReplay") == "no-such-bill-4712 #t", "the replay is echoed"),
            status_is(lambda s: "lastSync" not in s, "no Send pass ran"),
        ),
        spec_patch={"mode": "Plan"},
        annotations={P: "no-such-bill-4712 #t"},
    ),
    Case(
        "replay-traversal",
        "replay of ../../accounts",
        (
            event("ReplayRefused", "'../../accounts'", "not an m3ter Bill id"),
            ready("Ready", status="True"),
            run("COMPLETE"),
            status_is(lambda s: s.get("consecutiveErrors") == 0, "no error counted toward auto-disable"),
            no_event("AuthenticationError"),
        ),
        annotations={P: "../../accounts"},
    ),
    Case(
        "replay-slash",
        "replay of an id with a slash",
        (event("ReplayRefused", "'a/b'"), run("COMPLETE")),
        annotations={P: "a/b"},
    ),
    Case(
        "replay-encoded",
        "replay of a percent-encoded path",
        (event("ReplayRefused", "%2e%2e%2faccounts"), run("COMPLETE")),
        annotations={P: "%2e%2e%2faccounts"},
    ),
    Case(
        "replay-unknown-bill",
        "replay of a Bill m3ter does not have",
        (event("ReplayBillNotFound", "no-such-bill-4711"), run("COMPLETE")),
        annotations={P: "no-such-bill-4711"},
    ),
    Case(
        "replay-empty-run",
        "replay of 'run:' without an id",
        (event("ReplayRefused", "'run:'", "not a run reference"), run("COMPLETE")),
        annotations={P: "run:"},
    ),
    Case(
        "replay-unknown-run",
        "replay of a run not in the history",
        (event("ReplayRefused", "run-20200101T000000Z-abcdef", "not in status.recentRuns"), run("COMPLETE")),
        annotations={P: "run:run-20200101T000000Z-abcdef"},
    ),
    Case(
        "replay-run-path",
        "replay of a run reference with a path",
        (event("ReplayRefused", "run:../../x"), run("COMPLETE")),
        annotations={P: "run:../../x"},
    ),
    Case(
        "replay-long-id",
        "replay of a 200-character id",
        (event("ReplayRefused", "at most 128"), run("COMPLETE")),
        annotations={P: "b" * 200},
    ),
    Case(
        "replay-unicode",
        "replay of an id with a non-ASCII letter",
        (event("ReplayRefused", "not an m3ter Bill id"), run("COMPLETE")),
        annotations={P: "b\u00efll"},
    ),
    Case(
        "replay-nul",
        "replay of an id with a NUL",
        (event("ReplayRefused", "not an m3ter Bill id"), run("COMPLETE")),
        annotations={P: "bill\x00x"},
    ),
    Case(
        "replay-big",
        "replay of 220 KB",
        (event("AnnotationRefused", P, "characters long"), _short("lastHandledReplay")),
        annotations={P: "b" * BIG},
    ),
    Case(
        "replay-many",
        "replay naming 500 Bills",
        (event("AnnotationRefused", P, f"names {MANY_IDS} ids"), _short("lastHandledReplay")),
        annotations={P: " ".join(f"b{i}" for i in range(MANY_IDS))},
    ),
    Case(
        "replay-5000-ids",
        "replay naming 5000 Bills in 50 KB (the 5,000 m3ter requests of the issue)",
        (event("AnnotationRefused", P, "characters long"), _short("lastHandledReplay")),
        annotations={P: " ".join(f"bill-{i:05d}" for i in range(5000))},
    ),
    Case(
        "replay-list",
        "replay as a list",
        (event("AnnotationRefused", P, "must be a string"),),
        annotations={P: ["bill-1"]},
    ),
    Case(
        "requested-big",
        "requested-at of 220 KB",
        (event("AnnotationRefused", Q, "characters long"), _short("lastHandledRequestedAt")),
        annotations={Q: "t" * BIG},
    ),
    Case(
        "requested-bool",
        "requested-at as a boolean",
        (event("AnnotationRefused", Q, "must be a string"),),
        annotations={Q: True},
    ),
    Case(
        "reenable-big",
        "reenable of 220 KB",
        (event("AnnotationRefused", E, "characters long"), _short("lastHandledReenable")),
        annotations={E: "r" * BIG},
    ),
]

_INTERNAL = (ready("InternalError", "unexpected"), event("InternalError", "unexpected"))

STATUS_CASES = [
    Case(
        "status-watermark",
        "a restored status whose watermark is not a time",
        (*_INTERNAL, run("ERROR")),
        status={"sync": {"watermark": "yesterday"}},
    ),
    Case(
        "plan-status-watermark",
        "a Plan-mode integration restored with a watermark that is not a time",
        (*_INTERNAL, ready("InternalError", "in the plan pass"), status_is(lambda s: "lastSync" not in s, "no run")),
        spec_patch={"mode": "Plan"},
        status={"sync": {"watermark": "yesterday"}},
    ),
    Case(
        "status-retry-ids",
        "a restored status whose retry list is a number",
        (*_INTERNAL, run("ERROR")),
        status={"sync": {"retryBillIds": 5}},
    ),
    Case(
        "status-open-events",
        "a restored status whose openEvents is a string, with a resolve request",
        _INTERNAL,
        status={"openEvents": "garbage"},
        annotations={R: "evt-000000000000"},
    ),
    Case(
        "status-errors-text",
        "a restored status whose consecutiveErrors is text",
        _INTERNAL,
        status={"consecutiveErrors": "many"},
    ),
    Case(
        "status-runs-number",
        "a restored status whose recentRuns is a number, with a run replay",
        _INTERNAL,
        status={"recentRuns": 7},
        annotations={P: "run:run-1"},
    ),
]


def _line(field_name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def corrupt(body: dict[str, Any]) -> None:
        body["lineItems"][0][field_name] = value

    return corrupt


def _set(field_name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def corrupt(body: dict[str, Any]) -> None:
        body[field_name] = value

    return corrupt


def _null_line(body: dict[str, Any]) -> None:
    body["lineItems"].append(None)


def _bad_bill(id: str, what: str, corrupt: Callable[[dict[str, Any]], None], *contains: str) -> Case:
    return Case(
        id,
        what,
        (bill_error("bad", *contains), sent("good"), not_sent("bad")),
        org=f"org-{id}",
        bills={"good": ([_GOOD_LINE], None), "bad": ([dict(_GOOD_LINE, description="bad")], corrupt)},
    )


BILL_CASES = [
    _bad_bill("bill-nan", "a line subtotal of NaN", _line("subtotal", float("nan")), "subtotal"),
    _bad_bill("bill-inf", "a line subtotal of Infinity", _line("subtotal", float("inf")), "subtotal"),
    _bad_bill("bill-neg-inf", "a line subtotal of -Infinity", _line("subtotal", float("-inf")), "subtotal"),
    _bad_bill("bill-text-subtotal", "a line subtotal of text", _line("subtotal", "ten"), "subtotal"),
    _bad_bill("bill-object-subtotal", "a line subtotal that is an object", _line("subtotal", {"v": 1}), "subtotal"),
    _bad_bill("bill-null-subtotal", "a line subtotal of null (never 0.00)", _line("subtotal", None), "subtotal"),
    _bad_bill("bill-null-line", "a null line", _null_line, "line"),
    _bad_bill("bill-text-version", "a version of text", _set("version", "x"), "version"),
    _bad_bill("bill-float-version", "a version of 1.5", _set("version", 1.5), "version"),
    _bad_bill("bill-huge-version", "a version above int64", _set("version", 2**63), "version", "int64"),
    _bad_bill("bill-lines-string", "lineItems that is a string", _set("lineItems", "oops"), "line"),
    Case(
        "bill-twin-lines-invoice",
        "two lines with the same id and content (invoice mode)",
        (sent("twins", lines=2),),
        org="org-bill-twin-lines-invoice",
        bills={"twins": ([dict(_GOOD_LINE, id="same"), dict(_GOOD_LINE, id="same")], None)},
    ),
    Case(
        "bill-twin-lines-items",
        "two lines with the same id and content (items mode)",
        (sent("twins", items=2),),
        spec_patch={"createStripeInvoice": False},
        org="org-bill-twin-lines-items",
        bills={"twins": ([dict(_GOOD_LINE, id="same"), dict(_GOOD_LINE, id="same")], None)},
    ),
]

CASES: list[Case] = [*SPEC_CASES, *FILTER_CASES, *KEY_CASES, *ANNOTATION_CASES, *STATUS_CASES, *BILL_CASES]
