"""The chart's exporter env is accepted by the real exporter's configuration loader (the same code the
container runs), so a renamed flag/env var or a value the exporter refuses breaks here, not in a cluster."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from testsupport.render import by_component, render, with_quickstart

pytestmark = pytest.mark.chart

exporter_config: ModuleType | None
try:
    from kubecost_allocation_exporter import config as _exporter_config

    exporter_config = _exporter_config
except ImportError as exc:  # pragma: no cover - a broken venv must fail loudly, never skip
    exporter_config = None
    IMPORT_ERROR = exc


def load_exporter_config(values: dict[str, Any], tmp_path: Path, helm: str = "helm") -> Any:
    if exporter_config is None:
        pytest.fail(f"exporter package not importable ({IMPORT_ERROR}): run `make venv`", pytrace=False)
    docs = render(values, helm=helm)
    container = by_component(docs, "Deployment", "allocation-exporter")["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "exporter"
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    # Credential files are mounted from a Secret in the cluster; stand in for them with real files.
    for name in ("AUTH_TOKEN_FILE", "API_KEY_FILE"):
        if name in env:
            local = tmp_path / Path(env[name]).name
            local.write_text("secret\n")
            env[name] = str(local)
    return exporter_config.load(list(container.get("args", [])), env)


def test_default_env_is_accepted_by_the_exporter(helm: str, tmp_path: Path) -> None:
    cfg = load_exporter_config(with_quickstart({}), tmp_path, helm)
    assert cfg.kubecost_url == "http://my-kubecost-frontend.my-ns.svc:9090"
    assert cfg.cluster_name == "prod-eu-1"
    assert cfg.tenant_id == "acme"
    assert (cfg.listen_host, cfg.listen_port) == ("0.0.0.0", 9103)


def test_every_config_value_is_accepted_by_the_exporter(tmp_path: Path) -> None:
    cfg = load_exporter_config(
        with_quickstart(
            {
                "allocationExporter": {
                    "config": {
                        "api": "opencost",
                        "metricMode": "total",
                        "window": "today",
                        "dataLag": "5m",
                        "shareIdle": "none",
                        "refreshInterval": "1h30m",
                        "stalenessLimit": "2h",
                        "logLevel": "warning",
                        "logFormat": "json",
                        "kubecostUrl": "http://opencost.opencost.svc:9003",
                    },
                    "kubecostAuth": {"existingSecret": "kc", "tokenKey": "token", "apiKeyKey": "key"},
                    "port": 9200,
                },
                "kubecost": {"enabled": False},
            }
        ),
        tmp_path,
    )
    assert cfg.kubecost_url == "http://opencost.opencost.svc:9003"
    assert cfg.listen_port == 9200
    assert cfg.metric_mode == "total"
    assert cfg.share_idle == "none"


def test_schema_enums_match_the_exporter() -> None:
    import json

    if exporter_config is None:
        pytest.fail(f"exporter package not importable ({IMPORT_ERROR}): run `make venv`", pytrace=False)
    schema = json.loads((Path(__file__).parent.parent / "values.schema.json").read_text())
    props = schema["properties"]["allocationExporter"]["properties"]["config"]["properties"]
    assert tuple(props["logLevel"]["enum"]) == exporter_config.LOG_LEVELS
    assert tuple(props["logFormat"]["enum"]) == exporter_config.LOG_FORMATS
