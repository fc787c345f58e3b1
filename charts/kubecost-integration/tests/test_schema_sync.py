"""values.schema.json agrees with the exporter and with values.yaml.

- `allocationExporter.config.window`: every form the exporter's own parser accepts (windows.valid_window, the
  function its settings use) passes the schema under real Helm 3 and 4 and reaches the exporter unchanged; forms
  the exporter refuses are refused by the schema before anything is installed.
- scripts/check_values_schema.py (run by `make lint`) passes on the chart and catches each kind of drift.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kubecost_allocation_exporter.windows import KEYWORDS, valid_window

from testsupport.render import (
    CHART_DIR,
    ROOT,
    exporter_env,
    render,
    render_error,
    with_quickstart,
)

pytestmark = pytest.mark.chart

RFC_A, RFC_B = "2026-11-26T16:00:00Z", "2026-11-26T17:00:00Z"
#: One of each form of the exporter's grammar (windows.py), every unit and keyword included.
ACCEPTED = [
    "last-complete-hour",
    *KEYWORDS,
    *(f"{n}{unit}" for n in (1, 30) for unit in "mhdw"),
    *(f"7d offset 1{unit}" for unit in "mhdw"),
    "24h offset 24h",
    "2w offset 1w",
    f"{RFC_A},{RFC_B}",
    "2026-11-26T16:00:00+01:00,2026-11-26T17:00:00-05:30",
    "2026-11-26T16:00:00.250Z,2026-11-26T17:00:00.5Z",
    "179570880,179571240",  # 9, 10 and 11 digits: unix seconds
    "1795708800,1795712400",
    "17957088000,17957124000",
]
#: Refused by the exporter and by the schema. (The schema checks the form of an RFC3339 time and ranges of each
#: field; a date that does not exist in the calendar, e.g. 02-30, is refused by the exporter at start.)
REFUSED = [
    "7x",
    "7 d",
    "7d offset",
    "7d offset 1x",
    "7d  offset 1d",
    "offset 1d",
    "-1d",
    "1.5h",
    "last tuesday",
    "Today",
    RFC_A,
    f"{RFC_A},",
    "2026-13-01T00:00:00Z,2026-13-02T00:00:00Z",
    "2026-11-26T24:00:00Z,2026-11-26T25:00:00Z",
    "2026-11-26 16:00:00Z,2026-11-26 17:00:00Z",
    "12345678,12345679",
    "1795708800",
]


@pytest.mark.parametrize("window", ACCEPTED)
def test_the_exporter_and_the_schema_accept_the_same_windows(window: str, helm: str) -> None:
    assert valid_window(window), f"the exporter refuses {window!r}: update ACCEPTED from windows.py"
    env = exporter_env(render(with_quickstart({"allocationExporter": {"config": {"window": window}}}), helm=helm))
    assert env["WINDOW"] == window


@pytest.mark.parametrize("window", REFUSED)
def test_windows_the_exporter_refuses_are_refused_at_render(window: str, helm: str) -> None:
    assert not valid_window(window), f"the exporter accepts {window!r}: move it to ACCEPTED"
    message = render_error(with_quickstart({"allocationExporter": {"config": {"window": window}}}), helm=helm)
    assert "/allocationExporter/config/window" in message, message


def test_empty_window_means_the_default_and_is_not_passed() -> None:
    assert valid_window("")
    assert "WINDOW" not in exporter_env(render(with_quickstart()))


CHECKER = ROOT / "scripts" / "check_values_schema.py"


def _check(chart: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECKER), str(chart)], capture_output=True, text=True, check=False)


def test_the_schema_checker_passes_on_the_chart() -> None:
    proc = _check(CHART_DIR)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _drifted(tmp_path: Path, edit_values: str | None = None, edit_schema: object = None) -> str:
    chart = tmp_path / "chart"
    chart.mkdir(parents=True)
    shutil.copy(CHART_DIR / "values.yaml", chart / "values.yaml")
    shutil.copytree(CHART_DIR / "ci", chart / "ci")
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    if edit_values:
        (chart / "values.yaml").write_text((chart / "values.yaml").read_text() + edit_values)
    if callable(edit_schema):
        schema = copy.deepcopy(schema)
        edit_schema(schema)
    (chart / "values.schema.json").write_text(json.dumps(schema))
    proc = _check(chart)
    assert proc.returncode == 1, proc.stdout
    return proc.stdout


def test_the_schema_checker_catches_each_kind_of_drift(tmp_path: Path) -> None:
    # a value added to values.yaml only
    out = _drifted(tmp_path / "a", edit_values="newValue: 1\n")
    assert "newValue: in values.yaml but not declared in values.schema.json" in out
    # a property left in the schema after its value was removed from values.yaml
    out = _drifted(tmp_path / "b", edit_schema=lambda s: s["properties"].__setitem__("gone", {"type": "string"}))
    assert "gone: declared in values.schema.json but not in values.yaml" in out
    # a type the default does not have

    def retype(s: dict) -> None:  # type: ignore[type-arg]
        s["properties"]["allocationExporter"]["properties"]["port"]["type"] = "string"

    out = _drifted(tmp_path / "c", edit_schema=retype)
    assert "allocationExporter.port: values.yaml has a integer, the schema allows ['string']" in out


def test_the_schema_checker_refuses_a_default_outside_the_schema(tmp_path: Path) -> None:
    def narrow(s: dict) -> None:  # type: ignore[type-arg]
        s["properties"]["prometheus"]["properties"]["mode"]["enum"] = ["external"]

    out = _drifted(tmp_path, edit_schema=narrow)
    assert "prometheus.mode: values.yaml with ci/00-agent-values.yaml is refused by the schema" in out
