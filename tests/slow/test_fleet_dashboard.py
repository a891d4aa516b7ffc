"""The Grafana dashboard and the rules, against a real Prometheus.

Grafana itself is not packaged for Debian or PyPI, so the dashboard is
checked in two ways:

* its structure, as Grafana lays panels out: unique ids, every panel inside
  the 24-column grid and none overlapping, every query on the dashboard's
  ``$datasource`` and every ``$variable`` defined;
* every query, with the variables substituted as Grafana would (``$host`` as
  "All" and as one host), run by a real Prometheus that scrapes a real
  node_exporter serving what the timer's command wrote: each must parse and
  return data. The host variable's ``label_values`` query is asked through
  the label API, as Grafana's Prometheus data source does.

The same Prometheus loads deploy/prometheus/: every rule must evaluate
without error on real series, and the alerts whose conditions hold in that
data must be pending (the rules' selectors match what sealkit emits, not
only what the promtool cases assume).

Skipped, with the reason, where prometheus or node_exporter is not
installed.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import MSEAL_MISSING, python_env
from tests.slow.fleet_support import (
    IDLE,
    PROMETHEUS,
    REPO,
    SEALED,
    Probe,
    Service,
    free_port,
    missing_prometheus,
    one,
    parse_metrics,
    run_unit_command,
    sealkit_cli,
    start_node_exporter,
    unit_command,
)

pytestmark = pytest.mark.slow

DASHBOARD = REPO / "deploy" / "grafana" / "sealkit-fleet.json"
RULE_FILES = [
    REPO / "deploy" / "prometheus" / "sealkit-rules.yml",
    REPO / "deploy" / "prometheus" / "sealkit-expectations.example.yml",
]
# Grafana's own variables that a query may use; none is used today.
BUILTIN = {"__interval", "__rate_interval", "__range", "__interval_ms", "__range_s"}


def load() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def variables(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in doc["templating"]["list"]}


def test_dashboard_structure() -> None:
    doc = load()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", doc["uid"])
    assert doc["title"] and isinstance(doc["schemaVersion"], int)
    assert doc["id"] is None  # so that importing never overwrites another dashboard
    variables_ = variables(doc)
    assert variables_["datasource"]["type"] == "datasource"
    assert variables_["datasource"]["query"] == "prometheus"
    ds = {"type": "prometheus", "uid": "${datasource}"}

    all_panels = list(panels(doc))
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], int] = {}
    for panel in all_panels:
        g = panel["gridPos"]
        assert all(isinstance(g[k], int) for k in ("h", "w", "x", "y")), g
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0
        assert g["x"] + g["w"] <= 24, f"panel {panel['title']!r} is wider than the grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel['id']} overlap"
                cells[(x, y)] = panel["id"]
        assert panel["type"] in {"row", "stat", "table", "timeseries"}, panel["type"]
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel.get("description")
        assert panel["datasource"] == ds
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for t in panel["targets"]:
            assert t["datasource"] == ds
            assert t["expr"].strip()
            for name in re.findall(r"\$\{?([A-Za-z_]\w*)", t["expr"]):  # not $1 (label_replace)
                assert name in variables_ or name in BUILTIN, f"undefined ${name} in {t['expr']}"
            if panel["type"] == "timeseries":
                assert t["range"] and not t["instant"]
            else:
                assert t["instant"] and not t["range"]


# --- against Prometheus -----------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service, str]]:
    """node_exporter serving the unit command's output, and Prometheus
    scraping it every second with the rules loaded; the host's name."""
    reason = missing_prometheus()
    if reason is not None:
        pytest.skip(reason)
    assert PROMETHEUS is not None
    work = tmp_path_factory.mktemp("fleet-stack")
    textfile_dir = tempfile.mkdtemp(prefix="sealkit-textfile-")
    os.chmod(textfile_dir, 0o755)
    services: list[Service] = []
    probes: list[Probe] = []
    try:
        probes = [Probe(IDLE)]
        requirements = f"--require sealed:{IDLE}:anon"  # unmet: a pending alert
        if MSEAL_MISSING is None:  # something sealed for the "by kind" panel, a met requirement
            probes.append(Probe(SEALED, 3))
            requirements += f" --require sealed:{SEALED}:anon"
        argv, _ = unit_command(textfile_dir, sealkit_cli(), audit_args=requirements)
        done = run_unit_command(argv, python_env())
        assert done.returncode == 1, done.stderr
        node = start_node_exporter(textfile_dir, work / "node.log", collectors=("uname",))
        services.append(node)
        port = node.port
        prom_port = free_port()
        config = work / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(p) for p in RULE_FILES],
                    "scrape_configs": [
                        {"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                    ],
                }
            )
        )
        prom = Service(
            [
                PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
            ],
            prom_port, "/-/ready", work / "prometheus.log", as_daemon_user=False,
        )  # fmt: skip
        services.append(prom)
        host = os.uname().nodename
        deadline = time.monotonic() + 60
        while not query(prom, "sealkit_audit_last_run_timestamp_seconds"):
            assert time.monotonic() < deadline, prom.output()
            time.sleep(0.5)
        yield node, prom, host
    finally:
        for probe in probes:
            probe.stop()
        for service in reversed(services):
            service.stop()
        for name in os.listdir(textfile_dir):
            os.unlink(os.path.join(textfile_dir, name))
        os.rmdir(textfile_dir)


def api(prom: Service, path: str, **params: str) -> Any:
    url = f"/api/v1/{path}?{urllib.parse.urlencode(params)}"
    try:
        doc = json.loads(prom.get(url))
    except urllib.error.HTTPError as exc:  # a query that does not parse: 400 and why
        raise AssertionError(f"{params}: {exc.read().decode(errors='replace')}") from None
    assert doc["status"] == "success", doc
    return doc["data"]


def query(prom: Service, expr: str) -> list[dict[str, Any]]:
    data = api(prom, "query", query=expr)
    result: list[dict[str, Any]] = data["result"]
    return result


def query_range(prom: Service, expr: str) -> list[dict[str, Any]]:
    now = time.time()
    data = api(prom, "query_range", query=expr, start=str(now - 60), end=str(now), step="1")
    result: list[dict[str, Any]] = data["result"]
    return result


@pytest.mark.kernel
def test_every_dashboard_query_returns_data(stack: tuple[Service, Service, str]) -> None:
    _, prom, host = stack
    doc = load()
    # the host variable: label_values(METRIC, host), as Grafana asks it
    var = variables(doc)["host"]
    m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", var["query"])
    assert m, var["query"]
    hosts = api(prom, f"label/{m.group(2)}/values", **{"match[]": m.group(1)})
    assert hosts == [host]
    checked = 0
    for panel in panels(doc):
        for t in panel.get("targets", []):
            for value in (var["allValue"], re.escape(host)):
                expr = t["expr"].replace("$host", value)
                result = query(prom, expr) if t["instant"] else query_range(prom, expr)
                assert result, f"panel {panel['title']!r} {t['refId']}: no data for {expr}"
                checked += 1
    assert checked == 2 * sum(len(p.get("targets", [])) for p in panels(doc))


def test_rules_evaluate_on_real_series(stack: tuple[Service, Service, str]) -> None:
    node, prom, host = stack
    deadline = time.monotonic() + 30
    while True:
        groups = api(prom, "rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        # each group evaluates at its own offset: wait until both have seen data
        if (
            all(r["lastEvaluation"] > "2000" for r in rules)
            and query(prom, 'ALERTS{alertname="SealkitRequirementUnmet"}')
            and query(prom, "sealkit:command_unsealed_processes")
        ):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.5)
    assert len(rules) == 13  # 11 in sealkit-rules.yml, 2 in the example expectations
    for rule in rules:
        assert rule["health"] == "ok", rule
        assert not rule.get("lastError"), rule

    metrics = parse_metrics(node.get("/metrics"))
    alerts = {
        (a["labels"]["alertname"], a["labels"].get("requirement")): a
        for a in api(prom, "alerts")["alerts"]
    }
    # the unmet requirement, with the labels sealkit gave it
    unmet = alerts[("SealkitRequirementUnmet", f"sealed:{IDLE}:anon")]
    assert unmet["state"] == "pending" and unmet["labels"]["host"] == host
    if MSEAL_MISSING is None:
        assert (
            one(metrics, "sealkit_audit_requirement_met", requirement=f"sealed:{SEALED}:anon") == 1
        )
        assert ("SealkitRequirementUnmet", f"sealed:{SEALED}:anon") not in alerts
    # denied processes here <=> the alert is pending
    denied = one(metrics, "sealkit_audit_processes", state="denied")
    assert (("SealkitAuditIncomplete", None) in alerts) == (denied > 0)
    # and so for processes not read to the end, and for a limited scope
    unfinished = sum(
        one(metrics, "sealkit_audit_processes", state=s)
        for s in ("cut_short", "unreached", "changed")
    )
    assert (("SealkitAuditCutShort", None) in alerts) == (unfinished > 0)
    limited = sum(
        v
        for k, v in metrics["sealkit_audit_scope_limited"].items()
        if dict(k)["reason"] != "filter"
    )
    assert (("SealkitAuditScopeLimited", None) in alerts) == (limited > 0)
    # fresh, present, not failed: none of these
    for name in ("SealkitAuditStale", "SealkitAuditMissing", "SealkitAuditFailed"):
        assert (name, None) not in alerts
    # the recording rules, against the raw series
    unsealed = query(prom, f'sealkit:command_unsealed_processes{{command="{IDLE}"}}')
    expected = (
        one(metrics, "sealkit_audit_command_processes", command=IDLE)
        - one(metrics, "sealkit_audit_command_denied_processes", command=IDLE)
        - one(metrics, "sealkit_audit_command_sealed_processes", command=IDLE)
    )
    assert [float(r["value"][1]) for r in unsealed] == [expected]
    age = query(prom, "sealkit:audit_age_seconds")
    assert len(age) == 1 and 0 <= float(age[0]["value"][1]) < 600
