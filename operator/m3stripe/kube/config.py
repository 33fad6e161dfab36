"""The operator's settings: one object in groups, each field read from one environment variable.

Modelled on kopf's own `kopf.OperatorSettings`: groups of dataclasses, every field with its type, its default
and its docstring (the string under it, as kopf documents its settings). Here each field also names the
environment variable it is read from, with the default as one would write it there (`setting(...)`): that
one declaration is what `OperatorConfig.from_env` reads, what `m3stripe run`'s flags replace (`with_text`),
and what `settings_table` renders into the README (`m3stripe settings --markdown`).

`m3stripe run` builds the object and hands it to kopf in `memo` (m3stripe.kube.runtime.OperatorMemo); the
startup handler builds the process's Runtime from it. Nothing writes into `os.environ`.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import math
import os
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from m3stripe.api.durations import parse_duration

# ------------------------------------------------------------------------------------------------ parsers
# Each takes the variable's text and returns the value or raises ValueError saying what is wrong with it.


def _text(raw: str) -> str:
    return raw


def _seconds(raw: str) -> float:
    return parse_duration(raw).total_seconds()


def _positive_number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive number, got {raw!r}")
    return value


def _positive_integer(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"expected a whole number of at least 1, got {raw!r}")
    return value


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ValueError(f"expected a port number (0 to 65535), got {raw!r}")
    return value


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _switch(raw: str) -> bool:
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ValueError(f"expected true or false (also 1/0, yes/no, on/off), got {raw!r}")


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"expected {', '.join(choices[:-1])} or {choices[-1]}, got {raw!r}")
        return raw

    return parse


# ------------------------------------------------------------------------------------------------ fields


@dataclass(frozen=True)
class Variable:
    """Where a field comes from: its environment variable, its default as written there (None: unset), how its
    text becomes the value, whether an empty text means something (else it is the same as unset) and whether
    the value is a secret (never printed)."""

    name: str
    default: str | None
    parse: Callable[[str], Any]
    empty: bool = False
    secret: bool = False

    def read(self, raw: str, *, source: str) -> Any:
        """The value of `raw`, or SystemExit naming `source` (the variable, or the flag that gave the text)."""
        if raw == "" and not self.empty:
            return None if self.default is None else self.read(self.default, source=f"the default of {self.name}")
        try:
            return self.parse(raw)
        except ValueError as err:
            raise SystemExit(f"{source}: {err}") from None


def setting(
    env: str,
    default: str | None,
    parse: Callable[[str], Any] = _text,
    *,
    empty: bool = False,
    secret: bool = False,
) -> Any:
    """A settings field read from the environment variable `env`; `default` is its text when `env` is unset."""
    variable = Variable(env, default, parse, empty, secret)
    value = None if default is None else variable.read(default, source=f"the default of {env}")
    return field(default=value, repr=not secret, metadata={"variable": variable})


# ------------------------------------------------------------------------------------------------ groups


@dataclass(frozen=True)
class StripeConfig:
    """Stripe, where the Bills go."""

    api_base: str | None = setting("STRIPE_API_BASE", None)
    """Stripe's API address; unset: Stripe itself (https://api.stripe.com). For an emulator or a proxy."""

    timeout_seconds: float = setting("M3STRIPE_STRIPE_TIMEOUT", "30s", _seconds)
    """Per-request timeout towards Stripe; a timed-out write is retried with the same idempotency key."""


@dataclass(frozen=True)
class M3terConfig:
    """m3ter, where the Bills come from."""

    base_url: str | None = setting("M3TER_BASE_URL", None)
    """m3ter's API address; unset: m3ter itself (https://api.m3ter.com). For an emulator or a proxy."""

    requests_per_second: float = setting("M3STRIPE_M3TER_REQUESTS_PER_SECOND", "40", _positive_number)
    """Client-side budget per m3ter Organization, shared by every integration reading it. m3ter allows 50
    requests/s per Organization (https://www.m3ter.com/docs/guides/m3ter-apis/config-api-limits); 40 plus a burst
    of 5 stays under it with slack for jitter. Shards or other systems reading the same Organization must split
    the 50 between them."""


@dataclass(frozen=True)
class CredentialsConfig:
    """The Secrets an integration names (its Stripe key, its m3ter Service User) and their checks."""

    secret_poll_seconds: float = setting("M3STRIPE_SECRET_POLL_INTERVAL", "30s", _seconds)
    """How often the referenced Secrets are read again by name: a rotated or late-created Secret takes effect
    within it."""

    recheck_seconds: float = setting("M3STRIPE_CREDENTIAL_RECHECK_INTERVAL", "10m", _seconds)
    """How often a credential that Stripe or m3ter accepted is checked again (a key revoked in Stripe's
    dashboard)."""

    retry_seconds: float = setting("M3STRIPE_CREDENTIAL_RETRY_INTERVAL", "20s", _seconds)
    """How soon a credential check that failed for a transient reason (vendor unreachable, 429, 5xx) is tried
    again."""


@dataclass(frozen=True)
class SyncConfig:
    """The Send and Plan passes."""

    enabled: bool = setting("M3STRIPE_SYNC", "true", _switch)
    """Whether Send and Plan passes run at all; false: credentials and specs are still checked and reported in
    status, and nothing is written to Stripe."""

    concurrency: int | None = setting("M3STRIPE_SYNC_CONCURRENCY", None, _positive_integer)
    """Bills in flight at once per integration; unset: enough to keep the integration's Stripe rate limit busy
    at a half-second round trip (its requests per second x 0.5, between 8 and 64)."""

    def concurrency_for(self, requests_per_second: int) -> int:
        # Stripe publishes no latency; its writes take a quarter to half a second (issue 22's planning figure), so
        # rate x 0.5 s requests are in flight when the rate limit is reached.
        if self.concurrency is not None:
            return self.concurrency
        return max(8, min(64, math.ceil(requests_per_second * 0.5)))


@dataclass(frozen=True)
class SmtpConfig:
    """The SMTP server of the disablement emails (to `integrationDisabledNotificationUsers`)."""

    host: str | None = setting("M3STRIPE_SMTP_HOST", None)
    """The SMTP server; unset: no email is sent (the operator says so in its log and in the integration's
    events)."""

    port: int = setting("M3STRIPE_SMTP_PORT", "587", _port)
    """Its port."""

    sender: str = setting("M3STRIPE_SMTP_FROM", "m3stripe-operator@localhost")
    """The emails' From address."""

    security: str | None = setting("M3STRIPE_SMTP_SECURITY", None, _one_of("starttls", "tls", "none"))
    """starttls, tls or none; unset: tls on port 465, starttls on 587, none on any other port."""

    username: str | None = setting("M3STRIPE_SMTP_USERNAME", None)
    """The SMTP login; unset: none (deploy/base takes it from the optional Secret m3stripe-smtp)."""

    password: str | None = setting("M3STRIPE_SMTP_PASSWORD", None, secret=True)
    """Its password (never printed)."""

    timeout_seconds: float = setting("M3STRIPE_SMTP_TIMEOUT", "15s", _seconds)
    """Timeout of each connection to the SMTP server."""

    notification_retry_seconds: float = setting("M3STRIPE_NOTIFICATION_RETRY_INTERVAL", "30s", _seconds)
    """How soon a disablement email that could not be delivered is tried again, doubled each time (5 attempts
    in all)."""

    @property
    def effective_security(self) -> str:
        if self.security is not None:
            return self.security
        return {465: "tls", 587: "starttls"}.get(self.port, "none")


@dataclass(frozen=True)
class MetricsConfig:
    """The Prometheus endpoint."""

    port: int = setting("M3STRIPE_METRICS_PORT", "9090", _port)
    """Port of the Prometheus metrics endpoint (`/metrics`); 0: none."""


@dataclass(frozen=True)
class LeaseConfig:
    """Leader election: one writer per shard, on a coordination.k8s.io/v1 Lease (client-go's timings and
    meaning; see m3stripe.kube.leadership)."""

    name: str = setting("M3STRIPE_LEASE_NAME", "m3stripe", empty=True)
    """The shard's Lease, in its namespace; each shard has its own. Empty (as `m3stripe run --standalone` sets it):
    no election, this process is the only writer."""

    namespace: str | None = setting("M3STRIPE_LEASE_NAMESPACE", None)
    """The Lease's namespace; unset: the operator's own (POD_NAMESPACE)."""

    duration_seconds: float = setting("M3STRIPE_LEASE_DURATION", "15s", _seconds)
    """How long a silent holder keeps the Lease: a standby takes it after the record has not changed for this long
    by its own clock. Whole seconds (the Lease stores an integer)."""

    renew_deadline_seconds: float = setting("M3STRIPE_LEASE_RENEW_DEADLINE", "10s", _seconds)
    """How long after its last renew the holder stops writing; at least 2s below the duration, so the writer
    stops before the Lease can move."""

    retry_period_seconds: float = setting("M3STRIPE_LEASE_RETRY_PERIOD", "2s", _seconds)
    """How often the holder renews the Lease and a standby tries it."""

    lock_file: str = setting("M3STRIPE_LEASE_LOCK_FILE", "/var/run/m3stripe/lease.lock", empty=True)
    """A file on a pod-scoped volume (an emptyDir) that lets a restarted container take its own dead
    predecessor's Lease at once. Empty: no shortcut, a dead holder is waited out."""

    pod_name: str | None = setting("POD_NAME", None)
    """The pod's name (the Deployment sets it from the Downward API): the Lease holder is `<pod name>_<random>`;
    unset: the host name."""

    pod_namespace: str | None = setting("POD_NAMESPACE", None)
    """The pod's namespace (the Deployment sets it from the Downward API); unset: the service account's, else
    `default`."""


# ------------------------------------------------------------------------------------------------ the root


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator needs besides the StripeIntegration resources themselves."""

    stripe: StripeConfig = field(default_factory=StripeConfig)
    m3ter: M3terConfig = field(default_factory=M3terConfig)
    credentials: CredentialsConfig = field(default_factory=CredentialsConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    lease: LeaseConfig = field(default_factory=LeaseConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        """Every field from its environment variable (`os.environ` by default); SystemExit names a bad one."""
        env = os.environ if environ is None else environ
        groups: dict[str, Any] = {}
        for group in fields(cls):
            values = {}
            for item in fields(_group_type(group.name)):
                variable = _variable(item)
                if variable.name in env:
                    values[item.name] = variable.read(
                        env[variable.name], source=f"environment variable {variable.name}"
                    )
            groups[group.name] = _group_type(group.name)(**values)
        return cls(**groups)

    def with_text(self, group: str, name: str, raw: str, *, source: str) -> OperatorConfig:
        """This configuration with one field set from text, parsed as its variable is (a command-line flag:
        `source` names it in the error)."""
        item = next((f for f in fields(_group_type(group)) if f.name == name), None)
        if item is None:
            raise KeyError(f"no setting {group}.{name}")
        value = _variable(item).read(raw, source=source)
        return replace(self, **{group: replace(getattr(self, group), **{name: value})})


def _group_type(name: str) -> type[Any]:
    group = _group_types()[name]
    assert isinstance(group, type)
    return group


@functools.cache
def _group_types() -> dict[str, Any]:
    return typing.get_type_hints(OperatorConfig)


def _variable(item: Any) -> Variable:
    variable = item.metadata["variable"]
    assert isinstance(variable, Variable)
    return variable


# ------------------------------------------------------------------------------------------------ documentation


@dataclass(frozen=True)
class Setting:
    """One field of OperatorConfig as a person reads it."""

    group: str
    name: str
    variable: Variable
    doc: str

    @property
    def default_text(self) -> str:
        return "unset" if self.variable.default is None else self.variable.default

    def value_text(self, config: OperatorConfig) -> str:
        value = getattr(getattr(config, self.group), self.name)
        if value is None:
            return "unset"
        if self.variable.secret:
            return "(set)"
        if self.variable.parse is _seconds:
            return f"{value:g}s"
        if isinstance(value, bool):
            return str(value).lower()
        return str(value) if value != "" else '""'


def all_settings() -> Iterator[Setting]:
    """Every field of OperatorConfig in declaration order, with its variable and docstring."""
    for group in fields(OperatorConfig):
        cls = _group_type(group.name)
        docs = _attribute_docstrings(cls)
        for item in fields(cls):
            yield Setting(group.name, item.name, _variable(item), docs.get(item.name, ""))


def variables() -> frozenset[str]:
    """The names of every environment variable the operator reads."""
    return frozenset(s.variable.name for s in all_settings())


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """M3STRIPE_* variables that are no setting (a typo such as M3STRIPE_LEASE_DURATON is otherwise silent)."""
    known = variables()
    return sorted(name for name in environ if name.startswith("M3STRIPE_") and name not in known)


def settings_table() -> str:
    """The Markdown table of every setting (variable, default, meaning) that the README holds."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in all_settings():
        meaning = s.doc.replace("|", "\\|")
        default = "unset" if s.variable.default is None else f"`{s.variable.default}`"
        rows.append(f"| `{s.variable.name}` | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def _attribute_docstrings(cls: type[Any]) -> dict[str, str]:
    """The string literal under each field of `cls` (attribute docstrings, as kopf's settings have), one
    paragraph each."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(inspect.cleandoc(following.value.value).split())
    return docs
