"""A W&B workspace that answers "which architecture fits the budget" for a sweep, built from code
with W&B's `wandb-workspaces` library:

    aslfr-dashboard sweeps/depth_width.yaml --sweep SWEEP_ID            (an online sweep)
    aslfr-dashboard sweeps/folds.yaml --group folds                     (an offline sweep, synced)
    aslfr-dashboard sweeps/depth_width.yaml --sweep ID --group NAME     (both, side by side)
    aslfr-dashboard --all                                               (every run of the project)
    [--entity E] [--project P] [--name NAME] [--report] [--dry-run] [Hydra overrides ...]

Panels: parallel coordinates over the sweep file's parameters -> val/score, infer/latency_ms; a
scatter of val/score against infer/latency_ms coloured by budget/ok, the budget in its title;
parameter importance with respect to val/score; val/score and each decoding's score over the
epochs, grouped by configuration; the cross-validation view (the folds of each configuration
grouped: mean and standard deviation). The runs shown: the sweep's and/or the group's training
runs (job type `train`). Building is apart from saving (`build` / `save`); the workspace is saved
to W&B and its URL printed, or, where W&B cannot save a workspace, a report with the same panels.
Hydra overrides (e.g. `budget.latency_ms=50`, `model=base`) are those the runs used: the budget
and the decodings' names come from the config they compose.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aslfr import names
from aslfr.errors import DataError, exit_on_error
from aslfr.train.tracking import CHOICES, CONFIGURATION, logged_in

ROOT = Path(__file__).resolve().parents[2]  # the repository: conf/
EPOCH_SCORES = "Scores over epochs, by configuration"
CROSS_VALIDATION = "Cross-validation: the folds of each configuration"
BUDGET = "Which architecture fits the budget"
# a project-wide workspace (no sweep file): the architecture's main keys
DEFAULT_KEYS = ("model.encoder.depth", "model.encoder.width", "model.decoder.depth", "model.decoder.width")
GROUPED_BY = CONFIGURATION  # W&B config key shared by the folds of one configuration


@dataclass
class Plan:
    """What the workspace shows, before any W&B object is made (tests read it too)."""

    entity: str
    project: str
    name: str
    keys: list[str]  # parallel coordinates' config keys
    scores: list[str]  # val/score and each decoding's
    budget_ms: float
    sweep: str | None = None
    group: str | None = None


def swept_keys(definition: Mapping) -> list[str]:
    """The sweep's parameters as W&B config keys: a dotted key as it is; a config group's option
    (`model: {value: small}`) under the Hydra choices the runs record (hydra.choices.model)."""
    return [k if "." in k else f"{CHOICES}.choices.{k}" for k in definition["parameters"]]


def compose(overrides: list[str]):
    """The config the runs composed (conf/ and the overrides), unresolved where it needs Hydra's
    run (paths.output_dir)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    from aslfr.config import register

    register()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides))
    except HydraException as e:
        raise DataError(f"overrides {' '.join(overrides)}: {str(e).splitlines()[0]}") from None


def fixed_overrides(definition: Mapping) -> list[str]:
    """The sweep's single-valued parameters as overrides (`model=small`): they shape every run."""
    from aslfr.experiments.sweep import agent_args

    return agent_args({k: p["value"] for k, p in definition["parameters"].items() if "value" in p})


def score_keys(cfg) -> list[str]:
    """val/score and every decoding's score a run can log (names.val_score): attention, ctc,
    joint, and joint@W for the other weights of model.joint_weights (model.decode=best)."""
    weights = [w for w in cfg.model.joint_weights if w != cfg.model.joint_weight]
    each = ["attention", "ctc", "joint", *(f"joint@{w:g}" for w in weights)]
    return [names.VAL_SCORE, *(names.val_score(how) for how in each)]


def plan(
    definition: Mapping | None,
    entity: str,
    project: str,
    sweep: str | None = None,
    group: str | None = None,
    name: str | None = None,
    overrides: list[str] | tuple = (),
) -> Plan:
    composed = [*(fixed_overrides(definition) if definition else []), *overrides]
    cfg = compose(composed)
    where = ", ".join(x for x in (sweep and f"sweep {sweep}", group and f"group {group}") if x) or project
    return Plan(
        entity=entity,
        project=project,
        name=name or f"aslfr - {where}",
        keys=swept_keys(definition) if definition else list(DEFAULT_KEYS),
        scores=score_keys(cfg),
        budget_ms=cfg.budget.latency_ms,  # a float: the schema (aslfr.config.Budget) types it
        sweep=sweep,
        group=group,
    )


def filters(p: Plan):
    """The training runs (job type `train`; aslfr-compare logs `compare` runs beside them) of the
    sweep and/or the group."""
    from wandb_workspaces import expr

    train = expr.Metric("JobType") == "train"
    which = [
        *([expr.Metric("Sweep") == p.sweep] if p.sweep else []),
        *([expr.Metric("Group") == p.group] if p.group else []),
    ]
    if not which:
        return [train]
    if len(which) == 1:
        return [train, which[0]]
    return expr.And(train, expr.Or(*which))


def panels(p: Plan) -> dict[str, list]:
    """Section title -> its panels (wandb_workspaces.reports.v2 objects)."""
    import wandb_workspaces.reports.v2 as wr

    score, latency = wr.SummaryMetric(names.VAL_SCORE), wr.SummaryMetric(names.INFER_LATENCY_MS)
    by_configuration = wr.Config(GROUPED_BY)
    budget = [
        wr.ParallelCoordinatesPlot(
            title=f"{', '.join(p.keys)} -> {names.VAL_SCORE}, {names.INFER_LATENCY_MS}",
            columns=[
                *(wr.ParallelCoordinatesPlotColumn(metric=wr.Config(k)) for k in p.keys),
                wr.ParallelCoordinatesPlotColumn(metric=score),
                wr.ParallelCoordinatesPlotColumn(metric=latency),
            ],
        ),
        wr.ScatterPlot(
            title=(
                f"{names.VAL_SCORE} vs {names.INFER_LATENCY_MS}, colour: {names.BUDGET_OK} "
                f"(budget: {p.budget_ms:g} ms per sequence on the reference CPU)"
            ),
            x=latency,
            y=score,
            z=wr.SummaryMetric(names.BUDGET_OK),
            gradient=[
                wr.GradientPoint(color="#d62728", offset=0),
                wr.GradientPoint(color="#2ca02c", offset=100),
            ],
        ),
        wr.ParameterImportancePlot(with_respect_to=names.VAL_SCORE),
    ]
    epochs = [
        wr.LinePlot(
            title=f"{key} by configuration (mean, min-max)",
            x=names.EPOCH,
            y=[key],
            groupby=by_configuration,
            groupby_aggfunc="mean",
            groupby_rangefunc="minmax",
        )
        for key in p.scores
    ]
    folds = [
        wr.BarPlot(
            title=f"{names.BEST_VAL_SCORE} over the folds of each configuration (mean ± sd)",
            metrics=[wr.SummaryMetric(names.BEST_VAL_SCORE)],
            groupby=by_configuration,
            groupby_aggfunc="mean",
            groupby_rangefunc="stddev",
        ),
        wr.LinePlot(
            title=f"{names.VAL_SCORE} over the folds of each configuration (mean ± sd)",
            x=names.EPOCH,
            y=[names.VAL_SCORE],
            groupby=by_configuration,
            groupby_aggfunc="mean",
            groupby_rangefunc="stddev",
        ),
    ]
    return {BUDGET: budget, EPOCH_SCORES: epochs, CROSS_VALIDATION: folds}


PINNED = (
    f"summary:{names.VAL_SCORE}",
    f"summary:{names.INFER_LATENCY_MS}",
    f"summary:{names.BUDGET_OK}",
    f"config:{CONFIGURATION}.value",
    "config:data.fold.value",
)


def workspace(p: Plan):
    """The workspace (not saved)."""
    import wandb_workspaces.workspaces as ws

    return ws.Workspace(
        entity=p.entity,
        project=p.project,
        name=p.name,
        sections=[ws.Section(name=title, panels=shown, is_open=True) for title, shown in panels(p).items()],
        runset_settings=ws.RunsetSettings(filters=filters(p), pinned_columns=list(PINNED)),
    )


def report(p: Plan):
    """The same panels as a report (not saved): where W&B cannot save a workspace."""
    import wandb_workspaces.reports.v2 as wr

    runset = wr.Runset(entity=p.entity, project=p.project, name=p.name, filters=filters(p))
    blocks = []
    for title, shown in panels(p).items():
        blocks += [wr.H2(title), wr.PanelGrid(runsets=[runset], panels=shown)]
    return wr.Report(entity=p.entity, project=p.project, title=p.name[:128], blocks=blocks)


def save(p: Plan, as_report: bool = False) -> str:
    """Save the workspace (or, when asked or when W&B refuses the workspace, the report) to W&B;
    returns its URL."""
    if not as_report:
        try:
            return workspace(p).save().url
        except Exception as e:  # W&B's own words say why: a server without saved workspaces
            why = (str(e).splitlines() or [type(e).__name__])[0]
            print(f"W&B did not save the workspace ({why}); saving a report with the same panels", flush=True)
    try:
        return report(p).save().url
    except Exception as e:
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise DataError(
            f"W&B did not save the report for {p.entity}/{p.project} either ({why}); check the "
            "entity and project (--entity, --project) and that you may write there"
        ) from None


def load_definition(path: Path) -> dict:
    from aslfr.experiments.sweep import load

    return load(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="aslfr-dashboard", description=__doc__.splitlines()[0])
    ap.add_argument("definition", nargs="?", type=Path, help="the sweep file (sweeps/*.yaml): its parameters")
    ap.add_argument("--sweep", help="an online sweep's id (make sweep prints it)")
    ap.add_argument(
        "--group", help="a W&B group: an offline sweep's name (aslfr-sweep --name; default its file)"
    )
    ap.add_argument("--all", action="store_true", help="every training run of the project")
    ap.add_argument("--entity", help="W&B entity (default: yours)")
    ap.add_argument("--project", default="aslfr")
    ap.add_argument("--name", help="the workspace's name (default: aslfr - SWEEP, GROUP)")
    ap.add_argument("--report", action="store_true", help="save a report instead of a workspace")
    ap.add_argument("--dry-run", action="store_true", help="print the panels; save nothing")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides the runs used (budget, model)")
    args = ap.parse_intermixed_args(argv)
    exit_on_error(dashboard)(args)


def dashboard(args) -> None:
    definition = load_definition(args.definition) if args.definition else None
    group = args.group
    if definition is not None and not (args.sweep or group or args.all):
        group = args.definition.stem  # aslfr-sweep's default name: its runs' W&B group
    if definition is None and not (args.sweep or group or args.all):
        raise DataError("give a sweep file (sweeps/NAME.yaml), --sweep ID, --group NAME or --all")
    entity = args.entity
    if not args.dry_run:
        if not logged_in():
            raise DataError(
                "not logged in to W&B: run `wandb login` (or set WANDB_API_KEY), or --dry-run "
                "to see the panels; offline runs go up with `make sync` first"
            )
        if entity is None:
            import wandb

            entity = wandb.Api().default_entity
    p = plan(definition, entity or "ENTITY", args.project, args.sweep, group, args.name, args.overrides)
    print(outline(p))
    if args.dry_run:
        return
    print(f"dashboard: {save(p, args.report)}")


def outline(p: Plan) -> str:
    """The workspace in words: its runs, sections and panels."""
    lines = [f"{p.name} ({p.entity}/{p.project}; runs: {_where(p)})"]
    for title, shown in panels(p).items():
        lines.append(f"  {title}:")
        lines += [f"    {type(x).__name__}: {getattr(x, 'title', None) or _wrt(x)}" for x in shown]
    return "\n".join(lines)


def _where(p: Plan) -> str:
    parts = [f"sweep {p.sweep}" if p.sweep else "", f"group {p.group}" if p.group else ""]
    return " or ".join(x for x in parts if x) or "the whole project"


def _wrt(panel) -> str:
    return f"importance w.r.t. {panel.with_respect_to}"


if __name__ == "__main__":
    main()
