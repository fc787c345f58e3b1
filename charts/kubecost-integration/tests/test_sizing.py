"""Sizing presets (`sizing.preset`) and the optional VerticalPodAutoscaler, rendered with Helm 3 and 4.

The presets' one table is `files/sizing.yaml`. These tests check that the chart renders it (the default `small` is
the chart's resources as they were before the presets, with nothing else added), that explicit `resources` and
`extraEnv` win over it, that each preset keeps its margin over the benchmark's measurement at its scale
(docs/bench-results.json, `make bench-update-docs`, step `sizing`), and that docs/benchmarks.md and
docs/deployment.md quote the table and the measurements as they are.

The VerticalPodAutoscaler is a CRD, and kubeconform's offline schemas (`make tools`) are those of Kubernetes itself:
there is no VPA schema to validate against offline. `VPA_V1_SCHEMA` below is the part of the `autoscaling.k8s.io/v1`
VerticalPodAutoscaler schema this chart uses, written from the VPA's documented CRD (kubernetes/autoscaler,
`vertical-pod-autoscaler/deploy/vpa-v1-crd-gen.yaml`, and its docs for `InPlaceOrRecreate`), closed the way
kubeconform's `-strict` closes objects, so a misspelt or misplaced field fails.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bench.run import SIZING_MEMORY_MARGIN, sizing_figures
from testsupport import kubeconform
from testsupport.render import CHART_DIR, ROOT, by_component, objects, render, render_error, with_quickstart

pytestmark = pytest.mark.chart

PRESETS: dict[str, dict[str, Any]] = yaml.safe_load((CHART_DIR / "files" / "sizing.yaml").read_text())
BENCH_RESULTS = ROOT / "docs" / "bench-results.json"
VALUES: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())

#: The chart's resources before the presets existed: `small`, the default, must stay exactly these.
SMALL_EXPORTER = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"cpu": "250m", "memory": "192Mi"}}
SMALL_AGENT = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}

#: A refresh at the exporter's CPU limit, and a scrape with its remote write at the agent's, take at most this
#: long (s) at the preset's scale: the CPU limits bound a burst, the requests the average.
SECONDS_AT_CPU_LIMIT = 10.0


def quantity(value: str | int | float) -> float:
    """A Kubernetes CPU (cores) or memory (MiB) quantity as a number: `250m` -> 0.25, `1Gi` -> 1024."""
    text = str(value)
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)(m|Mi|Gi)?", text):
        number, unit = float(m.group(1)), m.group(2)
        return {None: number, "m": number / 1000, "Mi": number, "Gi": number * 1024}[unit]
    raise AssertionError(f"unexpected quantity {text!r} (use m for CPU, Mi or Gi for memory)")


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+)(s|m)", duration)
    assert m, duration
    return float(m.group(1)) * (60 if m.group(2) == "m" else 1)


def median(figure: str) -> float:
    figures = json.loads(BENCH_RESULTS.read_text())["figures"]
    assert figure in figures, f"{figure!r} not in {BENCH_RESULTS.name}: run `make bench-update-docs`"
    return float(statistics.median(f["value"] for f in figures[figure]))


def container(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    kind = "StatefulSet" if component == "agent" and objects(docs, "StatefulSet") else "Deployment"
    result: dict[str, Any] = by_component(docs, kind, component)["spec"]["template"]["spec"]["containers"][0]
    return result


def env_list(docs: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["name"], e.get("value")) for e in container(docs, "allocation-exporter")["env"]]


# ---------------------------------------------------------------------------------------------------------------
# The table and the render


def test_the_table_has_the_three_presets_in_order_and_small_is_the_default() -> None:
    assert list(PRESETS) == ["small", "medium", "large"]
    assert VALUES["sizing"]["preset"] == "small"
    assert PRESETS["small"]["exporter"]["resources"] == SMALL_EXPORTER
    assert PRESETS["small"]["agent"]["resources"] == SMALL_AGENT
    assert PRESETS["small"]["exporter"]["env"] == {}, "small keeps the exporter's own limits"
    # the values' own resources are empty, so the preset decides unless the user sets them
    assert VALUES["allocationExporter"]["resources"] == {}
    assert VALUES["prometheus"]["agent"]["resources"] == {}


def test_each_preset_is_at_least_the_one_below_it() -> None:
    for lower, upper in zip(PRESETS, list(PRESETS)[1:], strict=False):
        a, b = PRESETS[lower], PRESETS[upper]
        assert b["namespaces"] > a["namespaces"], (lower, upper)
        assert b["pods"] > a["pods"], (lower, upper)
        for part in ("exporter", "agent"):
            for side in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    low, up = a[part]["resources"][side][res], b[part]["resources"][side][res]
                    assert quantity(up) >= quantity(low), f"{upper} {part} {side}.{res} {up} < {lower}'s {low}"


def test_default_render_is_the_small_preset_and_nothing_more(helm: str) -> None:
    default = render(with_quickstart(), helm=helm)
    explicit = render(with_quickstart({"sizing": {"preset": "small"}}), helm=helm)
    assert default == explicit
    assert container(default, "allocation-exporter")["resources"] == SMALL_EXPORTER
    assert container(default, "agent")["resources"] == SMALL_AGENT
    names = [name for name, _ in env_list(default)]
    assert "MAX_SERIES" not in names
    assert "MAX_ROWS" not in names
    assert not objects(default, "VerticalPodAutoscaler")


@pytest.mark.parametrize("preset", ["medium", "large"])
def test_a_preset_sets_both_containers_and_the_exporter_limits(helm: str, preset: str) -> None:
    spec = PRESETS[preset]
    docs = render(with_quickstart({"sizing": {"preset": preset}}), helm=helm)
    assert container(docs, "allocation-exporter")["resources"] == spec["exporter"]["resources"]
    assert container(docs, "agent")["resources"] == spec["agent"]["resources"]
    env = env_list(docs)
    for name, value in spec["exporter"]["env"].items():
        assert env.count((name, str(value))) == 1, f"{name}={value} not rendered once: {env}"
    # MAX_SERIES must hold every series of the preset's namespaces (about 11 each, plus the cluster's)
    assert int(spec["exporter"]["env"]["MAX_SERIES"]) >= 11 * spec["namespaces"] + 12
    # MAX_ROWS must hold one refresh of the preset's pods and namespaces (`--breakdowns pod`)
    assert int(spec["exporter"]["env"]["MAX_ROWS"]) >= spec["pods"] + spec["namespaces"]


def test_small_caps_hold_its_own_scale() -> None:
    """`small` relies on the exporter's defaults (150,000 series and rows, docs/configuration.md)."""
    spec = PRESETS["small"]
    assert 11 * spec["namespaces"] + 12 <= 150_000
    assert spec["pods"] + spec["namespaces"] <= 150_000


def test_explicit_resources_win_key_by_key(helm: str) -> None:
    values = with_quickstart(
        {
            "sizing": {"preset": "large"},
            "allocationExporter": {"resources": {"limits": {"memory": "2Gi"}}},
            "prometheus": {"agent": {"resources": {"requests": {"cpu": "300m"}}}},
        }
    )
    docs = render(values, helm=helm)
    large = PRESETS["large"]
    exporter = container(docs, "allocation-exporter")["resources"]
    assert exporter["limits"] == {"cpu": large["exporter"]["resources"]["limits"]["cpu"], "memory": "2Gi"}
    assert exporter["requests"] == large["exporter"]["resources"]["requests"]
    agent = container(docs, "agent")["resources"]
    assert agent["requests"] == {"cpu": "300m", "memory": large["agent"]["resources"]["requests"]["memory"]}
    assert agent["limits"] == large["agent"]["resources"]["limits"]


def test_explicit_resources_win_over_the_default_preset_too(helm: str) -> None:
    whole = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    docs = render(with_quickstart({"allocationExporter": {"resources": whole}}), helm=helm)
    assert container(docs, "allocation-exporter")["resources"] == whole
    assert container(docs, "agent")["resources"] == SMALL_AGENT


@pytest.mark.parametrize("preset", ["small", "large"])
def test_a_null_drops_the_preset_key(helm: str, preset: str) -> None:
    """`limits.cpu: null` leaves the CPU limit out (no throttling), as it did when the defaults were in values.yaml."""
    values = with_quickstart(
        {
            "sizing": {"preset": preset},
            "allocationExporter": {"resources": {"limits": {"cpu": None}}},
            "prometheus": {"agent": {"resources": {"limits": {"cpu": None}, "requests": {"memory": "1Gi"}}}},
        }
    )
    docs = render(values, helm=helm)
    spec = PRESETS[preset]
    exporter = container(docs, "allocation-exporter")["resources"]
    assert exporter["limits"] == {"memory": spec["exporter"]["resources"]["limits"]["memory"]}
    assert exporter["requests"] == spec["exporter"]["resources"]["requests"]
    agent = container(docs, "agent")["resources"]
    assert agent["limits"] == {"memory": spec["agent"]["resources"]["limits"]["memory"]}
    assert agent["requests"] == {"cpu": spec["agent"]["resources"]["requests"]["cpu"], "memory": "1Gi"}


def test_extra_env_wins_over_the_preset_and_is_not_duplicated(helm: str) -> None:
    values = with_quickstart(
        {"sizing": {"preset": "medium"}, "allocationExporter": {"extraEnv": [{"name": "MAX_ROWS", "value": "900000"}]}}
    )
    env = env_list(render(values, helm=helm))
    assert [e for e in env if e[0] == "MAX_ROWS"] == [("MAX_ROWS", "900000")]
    assert ("MAX_SERIES", PRESETS["medium"]["exporter"]["env"]["MAX_SERIES"]) in env


def test_an_unknown_preset_is_refused_naming_the_presets(helm: str) -> None:
    err = render_error(with_quickstart({"sizing": {"preset": "huge"}}), helm=helm)
    assert "/sizing/preset" in err
    assert "'small', 'medium', 'large'" in err


def test_the_schema_offers_exactly_the_table_presets() -> None:
    schema = yaml.safe_load((CHART_DIR / "values.schema.json").read_text())
    assert schema["properties"]["sizing"]["properties"]["preset"]["enum"] == list(PRESETS)


# ---------------------------------------------------------------------------------------------------------------
# Each preset against its measurement


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_limits_keep_the_margin_over_the_peaks_at_its_scale(preset: str) -> None:
    """Memory limits >= SIZING_MEMORY_MARGIN x the peak RSS at the preset's scale (namespaces, and pods with
    `--breakdowns pod`; the agent scraping the preset's namespaces); CPU limits let a refresh (a scrape with its
    remote write) finish within SECONDS_AT_CPU_LIMIT."""
    spec = PRESETS[preset]
    names = sizing_figures(preset, spec)
    exporter, agent = spec["exporter"]["resources"]["limits"], spec["agent"]["resources"]["limits"]
    peak = max(median(names["exporter_peak_namespaces"]), median(names["exporter_peak_pods"]))
    assert quantity(exporter["memory"]) >= SIZING_MEMORY_MARGIN * peak, f"{preset}: exporter peak {peak:.0f} MiB"
    agent_peak = median(names["agent_peak"])
    assert quantity(agent["memory"]) >= SIZING_MEMORY_MARGIN * agent_peak, f"{preset}: agent peak {agent_peak:.0f} MiB"
    cpu = max(median(names["exporter_cpu_namespaces"]), median(names["exporter_cpu_pods"]))
    assert quantity(exporter["cpu"]) >= cpu / SECONDS_AT_CPU_LIMIT, f"{preset}: {cpu:.2f} CPU-s per refresh"
    assert quantity(agent["cpu"]) >= median(names["agent_cpu"]) / SECONDS_AT_CPU_LIMIT, preset


@pytest.mark.parametrize("preset", list(PRESETS)[1:])
def test_preset_requests_cover_the_bottom_of_its_range(preset: str) -> None:
    """Requests cover the steady use at the scale of the preset below (the smallest cluster that needs this one):
    RSS after the refreshes (scrapes), and the average CPU of one refresh per `refreshInterval` (one scrape per
    `scrapeInterval`). `small`'s are the chart's historical defaults (asserted above)."""
    below = list(PRESETS)[list(PRESETS).index(preset) - 1]
    names = sizing_figures(below, PRESETS[below])
    exporter, agent = (
        PRESETS[preset]["exporter"]["resources"]["requests"],
        PRESETS[preset]["agent"]["resources"]["requests"],
    )
    refresh = seconds(VALUES["allocationExporter"]["config"]["refreshInterval"])
    scrape = seconds(VALUES["prometheus"]["scrapeInterval"])
    steady = max(median(names["exporter_rss_namespaces"]), median(names["exporter_rss_pods"]))
    assert quantity(exporter["memory"]) >= steady, f"{preset}: {below}'s exporter steady RSS {steady:.0f} MiB"
    cpu = max(median(names["exporter_cpu_namespaces"]), median(names["exporter_cpu_pods"]))
    assert quantity(exporter["cpu"]) >= cpu / refresh, f"{preset}: {below}'s {cpu:.2f} CPU-s per refresh"
    agent_rss = median(names["agent_rss"])
    assert quantity(agent["memory"]) >= agent_rss, f"{preset}: {below}'s agent RSS {agent_rss:.0f} MiB"
    assert quantity(agent["cpu"]) >= median(names["agent_cpu"]) / scrape, preset


def table_row(preset: str) -> str:
    """The row of docs/benchmarks.md's "Sizing presets" table for `preset`, from the table and the last run."""
    spec = PRESETS[preset]
    names = sizing_figures(preset, spec)
    env = spec["exporter"]["env"]
    settings = ", ".join(f"`{k}` {int(v):,}" for k, v in env.items()) or "the exporter's defaults"
    ex, ag = spec["exporter"]["resources"], spec["agent"]["resources"]

    def pair(side: dict[str, str]) -> str:
        return f"{side['cpu']} / {side['memory']}"

    def mib(name: str) -> str:
        return f"{median(names[name]):.0f} MiB"

    label = f"`{preset}`" + (" (default)" if preset == VALUES["sizing"]["preset"] else "")
    return (
        f"| {label} | {spec['namespaces']:,} | {spec['pods']:,} | {settings} "
        f"| {pair(ex['requests'])} | {pair(ex['limits'])} "
        f"| {mib('exporter_peak_namespaces')} / {mib('exporter_peak_pods')} "
        f"| {pair(ag['requests'])} | {pair(ag['limits'])} | {mib('agent_peak')} |"
    )


@pytest.mark.parametrize("preset", list(PRESETS))
def test_benchmarks_md_quotes_the_table_and_the_measurements(preset: str) -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    row = table_row(preset)
    assert row in text, f"docs/benchmarks.md, section Sizing presets: expected the row\n{row}"
    for figure in sizing_figures(preset, PRESETS[preset]).values():
        assert f"| {figure} |" in text, f"the last run in docs/benchmarks.md has no figure {figure!r}"


@pytest.mark.parametrize("preset", list(PRESETS))
def test_deployment_md_names_each_preset_at_its_scale(preset: str) -> None:
    spec = PRESETS[preset]
    text = " ".join((ROOT / "docs" / "deployment.md").read_text().split())
    ex, ag = spec["exporter"]["resources"], spec["agent"]["resources"]
    row = (
        f"| `{preset}` | {spec['namespaces']:,} | {spec['pods']:,} | {ex['limits']['memory']} "
        f"| {ag['limits']['memory']} |"
    )
    assert row in text, f"docs/deployment.md, section Sizing: expected the row\n{row}"


def test_values_yaml_quotes_the_table() -> None:
    """The `sizing.preset` comment (and so the chart README) names each preset's scale and exporter limits."""
    text = " ".join(re.sub(r"^\s*# ?", "", (CHART_DIR / "values.yaml").read_text(), flags=re.M).split())
    small = PRESETS["small"]
    assert f"`small` (the default) {small['namespaces']:,} namespaces, or {small['pods']:,} pods" in text
    for preset in list(PRESETS)[1:]:
        spec = PRESETS[preset]
        assert f"`{preset}` {spec['namespaces']:,} / {spec['pods']:,}" in text, preset
        env = spec["exporter"]["env"]
        assert env["MAX_SERIES"] == env["MAX_ROWS"], "values.yaml quotes one number for both"
        assert f"{int(env['MAX_SERIES']):,} for `{preset}`" in text, preset


# ---------------------------------------------------------------------------------------------------------------
# VerticalPodAutoscaler

_QUANTITY = {"type": ["string", "integer"], "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"}
_RESOURCE_LIST = {"type": "object", "propertyNames": {"enum": ["cpu", "memory"]}, "additionalProperties": _QUANTITY}
#: What this chart renders of autoscaling.k8s.io/v1 VerticalPodAutoscaler, per its documented CRD (see the module
#: docstring): every object closed, enums as documented.
VPA_V1_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "autoscaling.k8s.io/v1"},
        "kind": {"const": "VerticalPodAutoscaler"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["targetRef"],
            "additionalProperties": False,
            "properties": {
                "targetRef": {
                    "type": "object",
                    "required": ["kind", "name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                    },
                },
                "updatePolicy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "updateMode": {"enum": ["Off", "Initial", "Recreate", "InPlaceOrRecreate", "Auto"]},
                        "minReplicas": {"type": "integer", "minimum": 1},
                    },
                },
                "resourcePolicy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "containerPolicies": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "containerName": {"type": "string"},
                                    "mode": {"enum": ["Auto", "Off"]},
                                    "minAllowed": _RESOURCE_LIST,
                                    "maxAllowed": _RESOURCE_LIST,
                                    "controlledResources": {"type": "array", "items": {"enum": ["cpu", "memory"]}},
                                    "controlledValues": {"enum": ["RequestsAndLimits", "RequestsOnly"]},
                                },
                            },
                        }
                    },
                },
            },
        },
    },
}


def test_the_vpa_schema_catches_what_it_should() -> None:
    """The hand-written schema itself: a valid object passes, a misplaced field and a bad enum fail."""
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"}

    def vpa(**spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "autoscaling.k8s.io/v1",
            "kind": "VerticalPodAutoscaler",
            "metadata": {"name": "x", "namespace": "y"},
            "spec": {"targetRef": target, **spec},
        }

    jsonschema.validate(vpa(updatePolicy={"updateMode": "Off", "minReplicas": 1}), VPA_V1_SCHEMA)
    for bad in (
        vpa(minReplicas=1),  # belongs to updatePolicy
        vpa(updatePolicy={"updateMode": "Always"}),
        vpa(resourcePolicy={"containerPolicies": [{"maxAllowed": {"cpu": "x"}}]}),
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, VPA_V1_SCHEMA)


@pytest.mark.parametrize(
    ("mode", "agent_kind", "update_mode", "components"),
    [
        ("agent", "Deployment", "Off", ["allocation-exporter", "agent"]),
        ("agent", "StatefulSet", "Recreate", ["allocation-exporter", "agent"]),
        ("external", "Deployment", "InPlaceOrRecreate", ["allocation-exporter"]),
        ("agent", "Deployment", "Initial", ["allocation-exporter", "agent"]),
    ],
)
def test_vpa_targets_each_workload_within_the_preset(
    helm: str, tmp_path: Path, mode: str, agent_kind: str, update_mode: str, components: list[str]
) -> None:
    values = with_quickstart(
        {
            "sizing": {"preset": "medium"},
            "verticalPodAutoscaler": {"enabled": True, "updateMode": update_mode},
            "prometheus": {"mode": mode, "agent": {"kind": agent_kind}},
        }
    )
    docs = render(values, helm=helm)
    vpas = objects(docs, "VerticalPodAutoscaler")
    assert sorted(v["metadata"]["labels"]["app.kubernetes.io/component"] for v in vpas) == sorted(components)
    for vpa in vpas:
        jsonschema.validate(vpa, VPA_V1_SCHEMA)
        component = vpa["metadata"]["labels"]["app.kubernetes.io/component"]
        target = vpa["spec"]["targetRef"]
        workload = [d for d in docs if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
        assert len(workload) == 1, target
        assert target["apiVersion"] == "apps/v1", target
        assert workload[0]["metadata"]["labels"]["app.kubernetes.io/component"] == component
        (policy,) = vpa["spec"]["resourcePolicy"]["containerPolicies"]
        pod_containers = workload[0]["spec"]["template"]["spec"]["containers"]
        (resources,) = [c["resources"] for c in pod_containers if c["name"] == policy["containerName"]]
        assert policy["controlledValues"] == "RequestsOnly"
        assert (policy["minAllowed"], policy["maxAllowed"]) == (resources["requests"], resources["limits"])
        assert vpa["spec"]["updatePolicy"]["updateMode"] == update_mode
        evicts = update_mode in ("Recreate", "InPlaceOrRecreate")
        assert vpa["spec"]["updatePolicy"].get("minReplicas") == (1 if evicts else None)
    # the rest of that render passes kubeconform (no offline schema for the VPA, checked above, nor for the
    # ServiceMonitor of `external` mode, which test_render covers)
    manifest = tmp_path / "render.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    summary = kubeconform.summary(manifest, "VerticalPodAutoscaler,ServiceMonitor")
    assert (summary["invalid"], summary["errors"], summary["skipped"]) == (0, 0, len(vpas) + (mode == "external"))


def test_vpa_bounds_follow_explicit_resources(helm: str) -> None:
    values = with_quickstart(
        {
            "verticalPodAutoscaler": {"enabled": True},
            "allocationExporter": {"resources": {"limits": {"memory": "1Gi"}}},
        }
    )
    vpa = by_component(render(values, helm=helm), "VerticalPodAutoscaler", "allocation-exporter")
    (policy,) = vpa["spec"]["resourcePolicy"]["containerPolicies"]
    assert policy["maxAllowed"] == {"cpu": SMALL_EXPORTER["limits"]["cpu"], "memory": "1Gi"}
    assert policy["minAllowed"] == SMALL_EXPORTER["requests"]


def test_vpa_update_mode_auto_is_refused(helm: str) -> None:
    """`Auto` is deprecated by the VPA (it means `Recreate`); the schema offers the explicit modes."""
    err = render_error(with_quickstart({"verticalPodAutoscaler": {"enabled": True, "updateMode": "Auto"}}), helm=helm)
    assert "/verticalPodAutoscaler/updateMode" in err
