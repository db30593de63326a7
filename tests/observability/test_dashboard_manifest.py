"""The Grafana dashboard ships as a valid ConfigMap the Grafana sidecar picks up, holding the JSON as is."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "k8s" / "dashboards"


def _render() -> str:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed: cannot render k8s/dashboards (CI installs it)")
    return subprocess.run(
        ["kubectl", "kustomize", str(DASHBOARDS)], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def test_the_dashboard_configmap_carries_the_json_and_the_sidecar_label() -> None:
    (configmap,) = list(yaml.safe_load_all(_render()))
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(configmap["data"]["loomflow-grafana.json"])
    assert shipped == json.loads((DASHBOARDS / "loomflow-grafana.json").read_text())
    assert shipped["uid"] == "loomflow-tenants"


def test_the_dashboard_configmap_validates_against_the_kubernetes_schema() -> None:
    rendered = _render()
    if shutil.which("kubernetes-validate") is None:
        pytest.skip("kubernetes-validate not installed (pip install kubernetes-validate)")
    result = subprocess.run(
        ["kubernetes-validate", "--strict", "-k", "1.30.0", "-"],
        input=rendered,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_panel_has_a_query_a_unit_and_the_prometheus_datasource_variable() -> None:
    dashboard = json.loads((DASHBOARDS / "loomflow-grafana.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "user_id", "service"} <= variables
