"""aslfr-dashboard: the workspace built for a sweep file, checked panel by panel without a W&B
server (the spec W&B would store); saving it with only W&B's API object (`wandb.Api`, which
carries every request of wandb-workspaces) stood in for."""

from __future__ import annotations

import json

import pytest
import wandb

from aslfr import names
from aslfr.experiments import dashboard

from conftest import ROOT


def spec_of(built) -> dict:
    """What W&B stores for a workspace: its view spec, as wandb-workspaces sends it."""
    return json.loads(built._to_model().spec.model_dump_json(by_alias=True, exclude_none=True))


def panels_by_kind(spec: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for section in spec["section"]["panelBankConfig"]["sections"]:
        for panel in section["panels"]:
            out.setdefault(panel["viewType"], []).append({**panel["config"], "section": section["name"]})
    return out


def config_accessor(key: str) -> str:
    """W&B's column for a nested config key: config:TOP.value.REST."""
    top, _, rest = key.partition(".")
    return f"config:{top}.value" + (f".{rest}" if rest else "")


@pytest.mark.parametrize("sweep", ["depth_width", "folds"])
def test_the_workspace_has_the_five_panel_kinds_for_the_sweeps_keys(sweep):
    definition = dashboard.load_definition(ROOT / "sweeps" / f"{sweep}.yaml")
    plan = dashboard.plan(definition, "me", "aslfr", sweep="abc123", group=sweep)
    kinds = panels_by_kind(spec_of(dashboard.workspace(plan)))
    swept = [k if "." in k else f"hydra.choices.{k}" for k in definition["parameters"]]
    if sweep == "folds":
        assert swept == ["hydra.choices.model", "data.fold"]  # model: {value: small}: the Hydra choice

    # 1. parallel coordinates: every swept key -> val/score, infer/latency_ms
    (parallel,) = kinds["Parallel Coordinates Plot"]
    assert [c["accessor"] for c in parallel["columns"]] == [
        *map(config_accessor, swept),
        f"summary:{names.VAL_SCORE}",
        f"summary:{names.INFER_LATENCY_MS}",
    ]
    # 2. the scatter: val/score against latency, coloured by budget/ok, the budget stated
    (scatter,) = kinds["Scatter Plot"]
    assert (scatter["xAxis"], scatter["yAxis"], scatter["zAxis"]) == (
        f"summary:{names.INFER_LATENCY_MS}",
        f"summary:{names.VAL_SCORE}",
        f"summary:{names.BUDGET_OK}",
    )
    assert "budget: 375 ms" in scatter["chartTitle"] and len(scatter["customGradient"]) == 2
    # 3. parameter importance w.r.t. val/score
    (importance,) = kinds["Parameter Importance"]
    assert importance["targetKey"] == names.VAL_SCORE
    # 4. every decoding's score over the epochs, grouped by configuration
    lines = kinds["Run History Line Plot"]
    over_epochs = [p for p in lines if p["section"] == dashboard.EPOCH_SCORES]
    decodings = ["attention", "ctc", "joint", "joint@0.3", "joint@0.5"]  # small: joint_weight 0.7
    assert [p["metrics"] for p in over_epochs] == [
        [names.VAL_SCORE],
        *([names.val_score(d)] for d in decodings),
    ]
    assert all(p["xAxis"] == names.EPOCH and p["groupBy"] == "configuration.value" for p in over_epochs)
    # 5. cross-validation: the folds of one configuration grouped, mean and standard deviation
    cv = [p for kind in kinds.values() for p in kind if p["section"] == dashboard.CROSS_VALIDATION]
    assert {(p["groupBy"], p["groupAgg"], p["groupArea"]) for p in cv} == {
        ("configuration.value", "mean", "stddev")
    }
    assert [p["metrics"] for p in kinds["Bar Chart"]] == [[f"summary_metrics.{names.BEST_VAL_SCORE}"]]


def test_the_runs_shown_are_the_sweeps_or_the_groups_training_runs():
    definition = dashboard.load_definition(ROOT / "sweeps" / "folds.yaml")

    def shown(**where) -> list:
        spec = spec_of(dashboard.workspace(dashboard.plan(definition, "me", "aslfr", **where)))
        return spec["section"]["runSets"][0]["filters"]["filters"]

    train = {"key": {"section": "run", "name": "jobType"}, "op": "=", "value": "train", "disabled": False}
    (only_train,) = shown()
    assert only_train == train
    first, group = shown(group="folds")
    assert first == train and (group["key"]["name"], group["value"], group["connector"]) == (
        "group",
        "folds",
        "AND",
    )
    first, either = shown(sweep="abc123", group="folds")
    assert first == train and either["connector"] == "AND"
    assert [(f["key"]["name"], f["value"]) for f in either["filters"]] == [
        ("sweep", "abc123"),
        ("group", "folds"),
    ]
    assert either["filters"][1]["connector"] == "OR"  # the online sweep and the synced offline one


def test_the_budget_and_the_decodings_follow_the_overrides():
    definition = dashboard.load_definition(ROOT / "sweeps" / "depth_width.yaml")
    plan = dashboard.plan(
        definition, "me", "aslfr", overrides=["budget.latency_ms=50", "model.joint_weight=0.5"]
    )
    assert plan.budget_ms == 50.0
    assert plan.scores[-2:] == [names.val_score("joint@0.3"), names.val_score("joint@0.7")]
    with pytest.raises(Exception, match="budget.no_such_key"):
        dashboard.plan(definition, "me", "aslfr", overrides=["budget.no_such_key=1"])


class FakeApi:
    """`wandb.Api()` as wandb-workspaces uses it with wandb 0.31: its GraphQL transport
    (`_service_api.execute_graphql(query, variables)`, `_service_api.app_url`), the default
    entity and, for a report, the project list."""

    sent: list = []
    refuse_workspaces = False

    def __init__(self, *args, **kwargs):
        self._service_api = self
        self.app_url = "https://wandb.example"
        self.default_entity = "me"

    def execute_graphql(self, query, variables=None):
        variable_values = dict(variables or {})
        if "upsertView" not in query:  # a report's run set looks its project's id up
            assert "internalId" in query, query
            return {"project": {"internalId": "UHJvamVjdDox"}}
        FakeApi.sent.append(variable_values)
        if variable_values.get("type") == "project-view":
            if FakeApi.refuse_workspaces:
                raise RuntimeError("views are not supported by this server")
            return {"upsertView": {"view": {"id": "v1", "name": "nw-abc"}, "inserted": True}}
        return {  # a report: W&B answers with the stored view
            "upsertView": {
                "view": {
                    "id": "rep1",
                    "name": variable_values["name"],
                    "displayName": variable_values["displayName"],
                    "spec": variable_values["spec"],
                    "project": {
                        "name": variable_values["projectName"],
                        "entityName": variable_values["entityName"],
                    },
                },
                "inserted": True,
            }
        }

    def projects(self, entity):
        return [type("Project", (), {"name": "aslfr"})()]


@pytest.fixture
def api(monkeypatch):
    FakeApi.sent, FakeApi.refuse_workspaces = [], False
    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setattr(dashboard, "logged_in", lambda: True)
    return FakeApi


def test_the_command_saves_the_workspace_and_prints_its_url(api, capsys):
    dashboard.main(["sweeps/depth_width.yaml", "--sweep", "abc123", "--entity", "me"])
    out = capsys.readouterr().out
    (sent,) = api.sent
    assert (sent["entityName"], sent["projectName"], sent["type"]) == ("me", "aslfr", "project-view")
    assert "Parameter Importance" in sent["spec"] and "abc123" in sent["spec"]
    assert out.splitlines()[-1].startswith("dashboard: https://wandb.example/me/aslfr?nw=")


def test_a_server_that_cannot_save_the_workspace_gets_a_report(api, capsys):
    api.refuse_workspaces = True
    dashboard.main(["sweeps/folds.yaml", "--group", "folds"])  # entity: the user's default
    out = capsys.readouterr().out
    assert "did not save the workspace (views are not supported by this server)" in out
    workspace, report = api.sent
    assert report["type"] == "runs" and report["entityName"] == "me"
    for kind in ("Parallel Coordinates Plot", "Scatter Plot", "Parameter Importance", "Bar Chart"):
        assert kind in report["spec"], kind
    assert out.splitlines()[-1].startswith("dashboard: https://wandb.example/me/aslfr/reports/")


def test_without_a_login_it_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(dashboard, "logged_in", lambda: False)
    with pytest.raises(SystemExit) as stop:
        dashboard.main(["sweeps/folds.yaml"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wandb login" in err and "--dry-run" in err


@pytest.mark.slow
def test_make_dashboard_runs_the_command_on_the_sweep_file(tmp_path):
    """`make dashboard SWEEP=... ARGS=...` is aslfr-dashboard from the environment (here with
    --dry-run: the panels printed, nothing saved)."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import subprocess_env

    venv = Path(sys.executable).parent.parent
    cmd = ["make", "-s", "-o", f"{venv}/.installed", "dashboard", f"VENV={venv}", "SWEEP=sweeps/folds.yaml"]
    out = subprocess.run(
        [*cmd, "ARGS=--group folds-long --dry-run budget.latency_ms=40"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("aslfr - group folds-long (ENTITY/aslfr; runs: group folds-long)")
    assert "budget: 40 ms" in out.stdout and "hydra.choices.model, data.fold -> val/score" in out.stdout
