"""A real Prometheus on 127.0.0.1, scraping a running operator and evaluating the shipped alert rules.

Used by the end-to-end monitoring test and by `m3stripe demo --prometheus`. The binary is Prometheus' own
(Debian's `prometheus` package ships `prometheus` and `promtool`); nothing here emulates it::

    with Prometheus(tmp_path, targets=["127.0.0.1:9090"], rules=prometheus_rules(RULES)) as prom:
        prom.query("up")

It listens on loopback only, keeps its TSDB in the given directory, and scrapes only the targets given
(loopback addresses): Prometheus' flags and configuration are documented at
https://prometheus.io/docs/prometheus/latest/command-line/prometheus/ and
https://prometheus.io/docs/prometheus/latest/configuration/configuration/; its HTTP API at
https://prometheus.io/docs/prometheus/latest/querying/api/.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

# The Prometheus Operator's scrape job is named after the Service (deploy/base/service.yaml); the alerts
# match job="m3stripe-operator", so the local scrape job has that name too.
JOB = "m3stripe-operator"


class PrometheusError(RuntimeError):
    """Prometheus refused a query (a PromQL error) or could not be reached."""


def find_binary(name: str) -> str | None:
    """`prometheus` or `promtool` on PATH (Debian installs both in /usr/bin)."""
    return shutil.which(name)


def prometheus_rules(prometheus_rule: str) -> str:
    """A Prometheus rule file (`groups:`) from a PrometheusRule manifest: its `spec` is exactly that format.

    https://prometheus-operator.dev/docs/api-reference/api/#monitoring.coreos.com/v1.PrometheusRuleSpec: "groups"
    are Prometheus' own rule groups, which the Prometheus Operator writes into Prometheus' rule files as they are.
    """
    resource = yaml.safe_load(prometheus_rule)
    if not isinstance(resource, dict) or resource.get("kind") != "PrometheusRule":
        raise ValueError("not a PrometheusRule manifest")
    return str(yaml.safe_dump({"groups": resource["spec"]["groups"]}, sort_keys=False, allow_unicode=True))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _loopback(target: str) -> None:
    host = target.rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        raise ValueError(f"Prometheus here scrapes only loopback targets, not {target!r}")


class Prometheus:
    """`prometheus` as a subprocess on 127.0.0.1, scraping `targets` as job m3stripe-operator."""

    def __init__(
        self,
        workdir: Path,
        *,
        targets: Sequence[str],
        rules: str | None = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        port: int | None = None,
    ) -> None:
        for target in targets:
            _loopback(target)
        self.workdir = workdir
        self.targets = list(targets)
        self.rules = rules
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.evaluation_interval},
            "scrape_configs": [
                {
                    "job_name": JOB,
                    # As the ServiceMonitor (deploy/base/servicemonitor.yaml): the operator's own `namespace`
                    # label (the StripeIntegration's) wins over any target label.
                    "honor_labels": True,
                    "scrape_timeout": self.scrape_interval,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        if self.rules is not None:
            config["rule_files"] = ["m3stripe-rules.yaml"]
        return config

    def __enter__(self) -> Prometheus:
        binary = find_binary("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus is not installed (Debian: apt-get install prometheus)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.rules is not None:
            (self.workdir / "m3stripe-rules.yaml").write_text(self.rules)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # Nothing outlives the run that needs the data; keep the TSDB small.
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise PrometheusError(f"prometheus exited ({self._process.returncode}): {self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready after {timeout}s: {self.output()[-2000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a success, PrometheusError with Prometheus' message otherwise."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=30) as reply:
                body = json.loads(reply.read())
        except urllib.error.HTTPError as err:  # 400/422: a bad query; the body says why
            body = json.loads(err.read() or b"{}")
        except OSError as err:
            raise PrometheusError(f"{url}: {err}") from err
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; its result as a list of {"metric": labels, "value": [time, "value"]}."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query, as a Grafana time series panel runs it: [{"metric": labels, "values": [[t, "v"], ...]}]."""
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing), each with labels, annotations and state."""
        return list(self.api("alerts")["alerts"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.api("rules")["groups"])

    def targets_up(self) -> bool:
        return any(t["health"] == "up" for t in self.api("targets")["activeTargets"])


def main(argv: list[str] | None = None) -> int:
    """`python -m m3stripe.testing.prometheus rules PROMETHEUSRULE.yaml`: the rule file promtool reads."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "rules":
        print("usage: python -m m3stripe.testing.prometheus rules PROMETHEUSRULE.yaml", file=sys.stderr)
        return 2
    sys.stdout.write(prometheus_rules(Path(args[1]).read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["JOB", "Prometheus", "PrometheusError", "find_binary", "free_port", "main", "prometheus_rules"]
