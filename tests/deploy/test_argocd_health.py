"""Health of a StripeIntegration as Argo CD (Lua) and Flux (CEL) see it, run against fixture objects.

The Lua runs in Lua 5.1 (Argo CD embeds gopher-lua, a Lua 5.1) inside a sandbox shaped like Argo
CD's: the base and table libraries, `require("os")` with only time/date, no string or math library
and no string methods. A script that works here but uses anything else would fail in Argo CD.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "deploy" / "argocd"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
HEALTH_KEY = "resource.customizations.health.m3stripe.dev_StripeIntegration"
ACTIONS_KEY = "resource.customizations.actions.m3stripe.dev_StripeIntegration"
IGNORE_KEY = "resource.customizations.ignoreResourceUpdates.m3stripe.dev_StripeIntegration"
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
# The operator rewrites these on every run (m3stripe.kube.sync_driver / status_builder).
CHURNY_STATUS_FIELDS = {
    "/status/lastSync",
    "/status/recentRuns",
    "/status/sync",
    "/status/lastSuccessfulSyncTime",
    "/status/openEvents",
    "/status/consecutiveErrors",
}


@dataclass(frozen=True)
class Case:
    name: str
    argocd: str
    flux: str
    message: str
    obj: dict[str, Any]


def _cases() -> list[Case]:
    cases = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        expect = doc["expect"]
        cases.append(Case(path.stem, expect["argocd"], expect["flux"], expect["message"], doc["object"]))
    return cases


CASES = _cases()


def _fixture(name: str) -> dict[str, Any]:
    return next(c.obj for c in CASES if c.name == name)


class ArgoLua:
    """A Lua 5.1 runtime restricted to what Argo CD's health checks and resource actions get."""

    _BASE = (
        "assert error getmetatable ipairs next pairs pcall rawequal rawget rawset select "
        "setmetatable tonumber tostring type unpack xpcall print"
    )

    def __init__(self) -> None:
        lupa = pytest.importorskip("lupa.lua51", reason="lupa (test extra) ships the Lua 5.1 runtime")
        self._lupa = lupa
        self.LuaError: type[Exception] = lupa.LuaError
        self.rt = lupa.LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
        safe_os = self.rt.table_from({"time": self._os_time, "date": self._os_date})
        make_env = self.rt.eval(
            """function(names, os_module)
                local env = {}
                for name in string.gmatch(names, "%S+") do env[name] = _G[name] end
                env.table = table
                env.require = function(module)
                    if module == "os" then return os_module end
                    error("module " .. tostring(module) .. " is not available in Argo CD")
                end
                -- Stricter than Argo CD: reading an undefined global (a library Argo CD lacks) or
                -- writing one (state that would outlive the call) is an error.
                return setmetatable(env, {
                    __index = function(_, key) error("undefined global " .. tostring(key), 2) end,
                    __newindex = function(_, key) error("assignment to global " .. tostring(key), 2) end,
                })
            end"""
        )
        self._env_factory: Callable[[], Any] = lambda: make_env(self._BASE, safe_os)
        self._run = self.rt.eval(
            """function(source, name, env, obj)
                local chunk, err = loadstring(source, name)
                if chunk == nil then error(err) end
                rawset(env, "obj", obj)
                setfenv(chunk, env)
                return chunk()
            end"""
        )
        # gopher-lua without its string library has no string methods; neither do we from here on.
        self.rt.execute('debug.setmetatable("", nil)')

    @staticmethod
    def _os_time(*_: Any) -> int:
        return int(time.time())

    @staticmethod
    def _os_date(fmt: str = "%c", *_: Any) -> str:
        now = datetime.now(UTC) if fmt.startswith("!") else datetime.now().astimezone()
        return now.strftime(fmt.lstrip("!"))

    def run(self, script: Path | str, obj: dict[str, Any]) -> Any:
        source = script.read_text(encoding="utf-8") if isinstance(script, Path) else script
        lua_obj = self.rt.table_from(obj, recursive=True)
        return self.to_python(self._run(source, str(script)[-60:], self._env_factory(), lua_obj))

    def to_python(self, value: Any) -> Any:
        if self._lupa.lua_type(value) != "table":
            return value
        items = {k: self.to_python(v) for k, v in value.items()}
        if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(1, len(items) + 1)):
            return [items[i] for i in range(1, len(items) + 1)]
        return items


@pytest.fixture(scope="module")
def lua() -> Iterator[ArgoLua]:
    yield ArgoLua()


def _lua_code(path: Path) -> str:
    """The script without comments, for the static checks."""
    return "\n".join(line.split("--", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_argocd_health(lua: ArgoLua, case: Case) -> None:
    hs = lua.run(ARGOCD / "health.lua", case.obj)
    assert isinstance(hs, dict) and set(hs) == {"status", "message"}, hs
    assert hs["status"] in ARGO_STATUSES
    assert (hs["status"], case.name) == (case.argocd, case.name), hs["message"]
    assert case.message in hs["message"]


def test_fixtures_cover_every_argocd_status_and_are_valid_stripeintegrations() -> None:
    from m3stripe.testing.crd_validation import CrdValidator

    assert {c.argocd for c in CASES} == {"Healthy", "Progressing", "Degraded", "Suspended"}
    crd = yaml.safe_load((ROOT / "crds" / "m3stripe.dev_stripeintegrations.yaml").read_text(encoding="utf-8"))
    validator = CrdValidator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    # A fixture the API server would reject tests a status the operator can never write.
    problems = {c.name: [str(e) for e in validator.validate(c.obj)] for c in CASES}
    assert {k: v for k, v in problems.items() if v} == {}


@pytest.mark.parametrize(
    "script", ["health.lua", "actions/discovery.lua", "actions/sync-now/action.lua", "actions/reenable/action.lua"]
)
def test_lua_uses_only_what_argocd_provides(script: str) -> None:
    code = _lua_code(ARGOCD / script)
    # Argo CD opens base, table and a safe os (through require) only; Lua 5.1 has no goto or `//`.
    assert not re.search(r"\b(string|math|io|utf8|debug|coroutine|bit32)\s*\.", code)
    assert not re.search(r"\bgoto\b|//|\bload\s*\(|\bdofile\b|\bloadfile\b", code)
    assert not re.search(r"\bos\s*\.", code) or 'require("os")' in code


def test_the_sandbox_rejects_what_argocd_lacks(lua: ArgoLua) -> None:
    # The health checks above prove something only if these fail here as they would in Argo CD.
    for script in ('return string.format("%d", 1)', 'return ("x"):upper()', "return math.max(1, 2)", "leak = 1"):
        with pytest.raises(lua.LuaError):
            lua.run(script, {})
    assert lua.run('return require("os").date("!%Y")', {}) == str(datetime.now(UTC).year)


def test_argocd_cm_patch_holds_the_same_lua_and_the_churn_filter() -> None:
    cm = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text(encoding="utf-8"))
    assert (cm["apiVersion"], cm["kind"], cm["metadata"]["name"]) == ("v1", "ConfigMap", "argocd-cm")
    data = cm["data"]
    assert data[HEALTH_KEY] == (ARGOCD / "health.lua").read_text(encoding="utf-8"), (
        "argocd-cm-patch.yaml differs from health.lua: copy health.lua into it"
    )
    actions = yaml.safe_load(data[ACTIONS_KEY])
    assert actions["discovery.lua"] == (ARGOCD / "actions" / "discovery.lua").read_text(encoding="utf-8")
    definitions = {d["name"]: d["action.lua"] for d in actions["definitions"]}
    assert definitions == {
        name: (ARGOCD / "actions" / name / "action.lua").read_text(encoding="utf-8")
        for name in ("sync-now", "reenable")
    }
    ignored = yaml.safe_load(data[IGNORE_KEY])
    assert set(ignored["jsonPointers"]) == CHURNY_STATUS_FIELDS
    # Conditions and generation drive the health: filtering them would freeze the health shown.
    assert not any(p.startswith(("/status/conditions", "/status/observedGeneration")) for p in ignored["jsonPointers"])
    assert data["resource.ignoreResourceUpdatesEnabled"] == "true"
    # Every value of a ConfigMap is a string.
    assert all(isinstance(v, str) for v in data.values())


@pytest.mark.parametrize(
    ("fixture", "sync_now_disabled", "reenable_disabled"),
    [("healthy", False, True), ("suspended", True, True), ("auto-disabled", True, False)],
)
def test_argocd_action_discovery(lua: ArgoLua, fixture: str, sync_now_disabled: bool, reenable_disabled: bool) -> None:
    actions = lua.run(ARGOCD / "actions" / "discovery.lua", _fixture(fixture))
    assert set(actions) == {"sync-now", "reenable"}
    assert actions["sync-now"]["disabled"] is sync_now_disabled
    assert actions["reenable"]["disabled"] is reenable_disabled


@pytest.mark.parametrize(
    ("action", "annotation"), [("sync-now", "m3stripe.dev/requested-at"), ("reenable", "m3stripe.dev/reenable")]
)
@pytest.mark.parametrize("existing", [None, {"team": "billing"}])
def test_argocd_action_sets_a_fresh_request_token(
    lua: ArgoLua, action: str, annotation: str, existing: dict[str, str] | None
) -> None:
    obj = _fixture("healthy")
    obj = {**obj, "metadata": {**obj["metadata"], **({"annotations": existing} if existing else {})}}
    before = datetime.now(UTC).replace(microsecond=0)
    out = lua.run(ARGOCD / "actions" / action / "action.lua", obj)
    token = out["metadata"]["annotations"][annotation]
    stamped = datetime.strptime(token, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= stamped <= datetime.now(UTC)
    assert {k: v for k, v in out["metadata"]["annotations"].items() if k != annotation} == (existing or {})
    # Old-style actions return the whole object, which Argo CD patches in: nothing else may change.
    assert {k: v for k, v in out.items() if k != "metadata"} == {k: v for k, v in obj.items() if k != "metadata"}


def _flux_exprs() -> dict[str, str]:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "flux" / "m3stripe.yaml").read_text(encoding="utf-8")))
    for doc in docs:
        for check in (doc.get("spec") or {}).get("healthCheckExprs") or ():
            if (check["apiVersion"], check["kind"]) == ("m3stripe.dev/v1alpha1", "StripeIntegration"):
                return {k: check[k] for k in ("inProgress", "failed", "current") if k in check}
    raise AssertionError("deploy/flux/m3stripe.yaml has no healthCheckExprs for StripeIntegration")


@pytest.fixture(scope="module")
def flux_health() -> Callable[[dict[str, Any]], str]:
    celpy = pytest.importorskip("celpy", reason="cel-python (test extra) evaluates Flux's CEL")
    env = celpy.Environment()
    programs = {name: env.program(env.compile(expr)) for name, expr in _flux_exprs().items()}

    def assess(obj: dict[str, Any]) -> str:
        activation = {k: celpy.json_to_cel(v) for k, v in obj.items()}
        # Flux's order; an expression that cannot be evaluated (a missing field) keeps it waiting.
        for name, result in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
            if name not in programs:
                continue
            try:
                value = programs[name].evaluate(activation)
            except Exception:
                return "InProgress"
            if isinstance(value, celpy.CELEvalError):
                return "InProgress"
            if bool(value):
                return result
        return "InProgress"

    return assess


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_flux_health_check_exprs(flux_health: Callable[[dict[str, Any]], str], case: Case) -> None:
    assert flux_health(case.obj) == case.flux


def test_flux_and_argocd_agree_on_what_needs_a_person() -> None:
    # Argo CD's Degraded is Flux's Failed; Suspended is as intended for Flux (Current).
    mapping = {"Healthy": "Current", "Degraded": "Failed", "Progressing": "InProgress", "Suspended": "Current"}
    assert [(c.name, mapping[c.argocd]) for c in CASES] == [(c.name, c.flux) for c in CASES]
