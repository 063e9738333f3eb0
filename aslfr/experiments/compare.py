"""Compare runs: a leaderboard, the mean ± spread of cross-validated configurations, and a plot of
score against inference latency.

    aslfr-compare DIR [DIR ...] [--out pareto.png] [--no-wandb]
    aslfr-compare --wandb-path ENTITY/PROJECT [--sweep SWEEP_ID]     (online runs)

Every run directory under each DIR (a sweep directory, `outputs/`, `multirun/`, or single run
directories: any directory holding the run's own `.hydra/config.yaml`) is one row. The run's own
files come first: `summary.json` (rewritten by `aslfr-export RUN --quantize ...`, so
it is never stale) and `status.json`; its offline W&B record fills in what a run that did not
finish has not written (its last val/score, its epochs). Runs logged with `wandb.mode=disabled`
are included. Runs that failed, were interrupted or are still running are listed apart from the
finished ones. Runs of one configuration on several folds (`-m data.fold=0,1,2,3,4`,
`sweeps/folds.yaml`) get a row with their mean ± standard deviation.

For an offline sweep's directory (aslfr-sweep: its Optuna study in DIR/optuna.journal) with at
least IMPORTANCE_MIN_TRIALS complete trials, it prints Optuna's parameter importances for the
sweep's metric (fANOVA: the share of the score's variance each parameter explains) and logs them
with the leaderboard.

The plot shows val/score against infer/latency_ms with the Pareto front of the runs within
budget and the budget line; when runs have no export to time (e.g. `debug=default`), against
their parameter count instead. It is written as a PNG and logged to W&B with the tables.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from omegaconf import OmegaConf

from aslfr import names
from aslfr.errors import DataError, exit_on_error
from aslfr.experiments.offline import read_runs
from aslfr.train.rundir import RECORD, RunDir, flatten
from aslfr.train.tracking import CHOICES, CONFIGURATION, NOT_CONFIGURATION, describe, logged_in, resolve_mode

SCORE, LATENCY = names.VAL_SCORE, names.INFER_LATENCY_MS
IMPORTANCE_MIN_TRIALS = 4  # complete trials before fANOVA's forest says anything
# what the W&B record adds to the resolved config: derived from it, so no part of the comparison
NOT_COMPARED = (*NOT_CONFIGURATION, CHOICES, CONFIGURATION, "_wandb")


@dataclass
class Row:
    name: str
    score: float | None
    latency_ms: float | None
    model_mb: float | None
    params: int | None
    encoder: str
    decoder: str
    budget_ok: bool | None
    fold: int | None
    budget_ms: float | None
    status: str = "finished"  # finished | failed | interrupted | running
    epochs: int | None = None
    configuration: str = ""  # runs with equal strings differ only in their fold
    path: str | None = None  # the run directory (offline runs)

    @classmethod
    def from_run(cls, name: str, config: Mapping, summary: Mapping, status: str = "finished") -> Row:
        model = config.get("model", {})
        score = summary.get(names.BEST_VAL_SCORE, summary.get(SCORE))
        if isinstance(score, Mapping):  # W&B keeps "max" when the metric was defined so
            score = score.get("max")

        def stack(k):
            s = model.get(k, {})
            return f"{s.get('depth')}x{s.get('width')}" if s else "?"

        flat = {
            k: v
            for k, v in flatten(config).items()
            if not any(k == p or k.startswith(p + ".") for p in NOT_COMPARED)
        }
        return cls(
            name=name,
            score=_num(score),
            latency_ms=_num(summary.get(LATENCY)),
            model_mb=_num(summary.get(names.INFER_MODEL_MB)),
            params=int(summary[names.PARAMS]) if summary.get(names.PARAMS) else None,
            encoder=stack("encoder"),
            decoder=stack("decoder"),
            budget_ok=summary.get(names.BUDGET_OK),
            fold=config.get("data", {}).get("fold"),
            budget_ms=_num(config.get("budget", {}).get("latency_ms")),
            status=status,
            epochs=summary.get(names.EPOCHS),
            configuration=json.dumps(flat, sort_keys=True, default=str),
        )


def _num(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def run_dirs(root: Path) -> list[Path]:
    """Every run directory under root (root itself included): those with the run's record."""
    return sorted({p.parents[1] for p in Path(root).rglob("/".join(RECORD))})


def run_row(run_dir: Path) -> Row:
    """One run: summary.json and status.json first, the offline W&B record for the rest."""
    config = yaml.safe_load(run_dir.joinpath(*RECORD).read_text()) or {}
    path = run_dir / names.SUMMARY_FILE
    own = json.loads(path.read_text()) if path.exists() else {}
    wandb_runs = [r for r in read_runs(run_dir) if "model" in r.config]
    logged = next(
        (r for r in wandb_runs if r.id == own.get(names.WANDB_ID)), wandb_runs[-1] if wandb_runs else None
    )
    summary = {**(logged.summary if logged else {}), **own}
    if logged and names.EPOCHS not in summary:  # the last epoch it logged
        summary[names.EPOCHS] = max(
            (row[names.EPOCH] for row in logged.history if names.TRAIN_SAMPLES_PER_SEC in row), default=None
        )
    status = RunDir(run_dir).status()["status"]
    if status == "unknown":  # a run from before status.json: finished if it has a summary
        status = "finished" if own else "interrupted"
    name = logged.name if logged and logged.name else describe_name(config)
    row = Row.from_run(f"{name} {run_dir.name}", config, summary, status)
    row.path = str(run_dir)
    return row


def describe_name(config: Mapping) -> str:
    """The name the run has in W&B (a run logged with wandb.mode=disabled has no record)."""
    try:
        return describe(OmegaConf.create(config))["name"]
    except (AttributeError, KeyError):  # a config without model/data: the directory says enough
        return "run"


def offline_rows(dirs: Iterable[Path]) -> list[Row]:
    rows = []
    for d in dirs:
        if not Path(d).exists():
            raise DataError(
                f"{d} does not exist: give run directories, a sweep directory "
                "(sweeps-out/NAME), outputs/ or multirun/"
            )
        rows += [run_row(r) for r in run_dirs(Path(d))]
    return rows


def online_rows(path: str, sweep: str | None = None) -> list[Row]:
    import wandb

    if not logged_in():
        raise DataError(
            f"--wandb-path {path}: not logged in to W&B; run `wandb login` (or set "
            "WANDB_API_KEY), or compare offline run directories: python -m "
            "aslfr.compare outputs/"
        )
    try:
        api = wandb.Api()
        runs = list(api.sweep(f"{path}/{sweep}").runs if sweep else api.runs(path))
    except Exception as e:  # network, permission, unknown project: W&B's own words say which
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"--wandb-path {path}{f' --sweep {sweep}' if sweep else ''}: W&B "
            f"could not list the runs ({first}); check the entity/project (and "
            "sweep id) in the W&B dashboard's URL"
        ) from None
    state = {
        "finished": "finished",
        "crashed": "failed",
        "failed": "failed",
        "killed": "interrupted",
        "running": "running",
    }
    return [
        Row.from_run(
            r.name, dict(r.config), dict(r.summary), state.get(getattr(r, "state", "finished"), "finished")
        )
        for r in runs
        if "model" in r.config
    ]


def pareto_front(rows: list[Row]) -> list[Row]:
    """Within-budget runs that no other within-budget run beats on both score and latency."""
    ok = sorted(
        (r for r in rows if r.budget_ok and r.score is not None and r.latency_ms),
        key=lambda r: (r.latency_ms, -r.score),
    )
    front, best = [], -math.inf
    for r in ok:
        if r.score > best:
            front.append(r)
            best = r.score
    return front


@dataclass
class FoldSummary:
    """One configuration run on several folds."""

    name: str
    folds: list[int]
    scores: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def sd(self) -> float:  # sample standard deviation over the folds
        return float(np.std(self.scores, ddof=1))


def fold_summaries(rows: list[Row]) -> list[FoldSummary]:
    """Finished runs grouped by configuration; a group on two or more folds gets a summary."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.status == "finished" and r.score is not None and r.fold is not None:
            groups[r.configuration].append(r)
    out = []
    for members in groups.values():
        by_fold = {r.fold: r for r in members}  # one run per fold (the last one listed)
        if len(by_fold) >= 2:
            folds = sorted(by_fold)
            name = members[0].name.split(" ")[0].rsplit("-f", 1)[0]
            out.append(FoldSummary(name, folds, [by_fold[k].score for k in folds]))
    return out


@dataclass
class Importance:
    """Optuna's parameter importances for one study of an offline sweep (empty: not enough trials)."""

    sweep: str
    trials: int  # complete trials
    values: dict[str, float]  # parameter -> importance, largest first (they sum to 1)


def importances(sweep_dir: Path) -> list[Importance]:
    """The parameter importances of each study in an offline sweep's journal (DIR/optuna.journal,
    written by aslfr-sweep): fANOVA over the complete trials, for the parameters they varied."""
    from aslfr.experiments.sweep import JOURNAL, open_storage

    if not (Path(sweep_dir) / JOURNAL).is_file():
        return []
    import optuna
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(Path(sweep_dir))
    out = []
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        varied = {k for t in complete for k in t.params if len({str(u.params.get(k)) for u in complete}) > 1}
        values = {}
        if len(complete) >= IMPORTANCE_MIN_TRIALS and varied:
            found = optuna.importance.get_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=0), params=sorted(varied)
            )
            values = {k: float(v) for k, v in found.items()}
        out.append(Importance(name, len(complete), values))
    return out


def importance_table(found: list[Importance], metric: str = SCORE) -> str:
    lines = []
    for imp in found:
        if not imp.values:
            lines.append(
                f"parameter importances ({imp.sweep}): {imp.trials} complete trial(s) with varied "
                f"parameters; at least {IMPORTANCE_MIN_TRIALS} needed"
            )
            continue
        lines.append(
            f"parameter importances for {metric} ({imp.sweep}, fANOVA over {imp.trials} complete trials):"
        )
        lines += [f"  {k:40} {v:6.3f}" for k, v in imp.values.items()]
    return "\n".join(lines)


def _fmt(v, f):
    return format(v, f) if v is not None else "-"


def leaderboard(rows: list[Row]) -> str:
    head = (
        f"{'run':42} {'val/score':>9} {'ms':>7} {'MB':>6} {'params':>10} {'encoder':>8} "
        f"{'decoder':>8} {'budget':>6} {'fold':>4}"
    )
    lines = [head, "-" * len(head)]
    finished = [r for r in rows if r.status == "finished"]
    for r in sorted(finished, key=lambda r: -(r.score if r.score is not None else -math.inf)):
        ok = {True: "ok", False: "OVER", None: "-"}[r.budget_ok]
        lines.append(
            f"{r.name[:42]:42} {_fmt(r.score, '.4f'):>9} {_fmt(r.latency_ms, '.1f'):>7} "
            f"{_fmt(r.model_mb, '.2f'):>6} {_fmt(r.params, ','):>10} {r.encoder:>8} "
            f"{r.decoder:>8} {ok:>6} {_fmt(r.fold, 'd'):>4}"
        )
    summaries = fold_summaries(rows)
    if summaries:
        lines += [
            "",
            "cross-validation (finished runs of one configuration on several folds):",
            f"{'configuration':42} {'folds':>10} {'mean':>8} {'± sd':>8} {'min':>8} {'max':>8}",
        ]
        for s in summaries:
            lines.append(
                f"{s.name[:42]:42} {','.join(map(str, s.folds)):>10} {s.mean:8.4f} "
                f"{s.sd:8.4f} {min(s.scores):8.4f} {max(s.scores):8.4f}"
            )
    unfinished = [r for r in rows if r.status != "finished"]
    if unfinished:
        lines += [
            "",
            "not finished (no final score; best val/score so far, if any):",
            f"{'run':42} {'status':>11} {'epochs':>6} {'val/score':>9} {'fold':>4}",
        ]
        for r in unfinished:
            lines.append(
                f"{r.name[:42]:42} {r.status:>11} {_fmt(r.epochs, 'd'):>6} "
                f"{_fmt(r.score, '.4f'):>9} {_fmt(r.fold, 'd'):>4}"
            )
    return "\n".join(lines)


def plotted(rows: list[Row]) -> tuple[str, list[Row]]:
    """What the plot's x axis is ("latency" or "parameters") and the runs it shows: against
    latency the runs that were exported; when none was (e.g. debug=default), every scored
    run against its parameter count, so a table with scores never gets an empty plot."""
    scored = [r for r in rows if r.score is not None]
    by_latency = [r for r in scored if r.latency_ms is not None]
    if by_latency:
        return "latency", by_latency
    return "parameters", [r for r in scored if r.params]


def plot(rows: list[Row], out: Path) -> Path:
    """val/score against latency (with the Pareto front and the budget) or parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    what, shown = plotted(rows)
    by_latency = what == "latency"
    if by_latency:
        x_of = lambda r: r.latency_ms  # noqa: E731
        ax.set_xlabel("inference latency, ms per sequence (LiteRT, 1 thread)")
    else:
        x_of = lambda r: r.params  # noqa: E731
        ax.set_xlabel("parameters (no run was exported, so no latency to show)")
        ax.set_xscale("log")
    groups = (
        ("within budget", "o", lambda r: r.budget_ok is True),
        ("over budget", "x", lambda r: r.budget_ok is False),
        ("budget not measured", "s", lambda r: r.budget_ok is None),
    )
    for label, marker, member in groups:
        pts = [r for r in shown if member(r)]
        if pts:
            ax.scatter([x_of(r) for r in pts], [r.score for r in pts], marker=marker, label=label, alpha=0.8)
    front = pareto_front(rows) if by_latency else []
    if front:
        ax.step(
            [r.latency_ms for r in front],
            [r.score for r in front],
            where="post",
            color="C2",
            label="Pareto front",
        )
        for r in front:
            ax.annotate(
                f"e{r.encoder} d{r.decoder}",
                (r.latency_ms, r.score),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    budgets = {r.budget_ms for r in rows if r.budget_ms}
    if by_latency and len(budgets) == 1:  # drawn when the runs share one, and it is in view
        (budget,) = budgets
        if budget <= 3 * max(r.latency_ms for r in shown):
            ax.axvline(budget, color="red", linestyle="--", label="budget.latency_ms")
    if not shown:
        ax.text(
            0.5,
            0.5,
            f"{len(rows)} run(s), none with a val/score yet",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_ylabel("val/score (held-out signers)")
    ax.set_title(f"{len(shown)} of {len(rows)} runs: score against {what}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def log_to_wandb(
    rows: list[Row], png: Path, where: Path, project: str, group: str, found: list[Importance] = ()
) -> None:
    import wandb

    Path(where).mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=project,
        job_type="compare",
        group=group,
        dir=str(where),
        mode=resolve_mode("auto"),
        config={"compare": {"runs": len(rows)}},
        settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
    )
    table = wandb.Table(
        columns=[
            "run",
            names.VAL_SCORE,
            "latency_ms",
            "model_mb",
            "params",
            "encoder",
            "decoder",
            "budget_ok",
            "fold",
            "status",
        ],
        data=[
            [
                r.name,
                r.score,
                r.latency_ms,
                r.model_mb,
                r.params,
                r.encoder,
                r.decoder,
                r.budget_ok,
                r.fold,
                r.status,
            ]
            for r in rows
        ],
    )
    logged = {
        "compare/pareto": wandb.Image(str(png)),
        "compare/leaderboard": table,
        "compare/score_vs_latency": wandb.plot.scatter(
            table, "latency_ms", names.VAL_SCORE, title="val/score vs latency"
        ),
    }
    summaries = fold_summaries(rows)
    if summaries:
        logged["compare/folds"] = wandb.Table(
            columns=["configuration", "folds", "n", "mean", "sd", "min", "max"],
            data=[
                [
                    s.name,
                    ",".join(map(str, s.folds)),
                    len(s.folds),
                    s.mean,
                    s.sd,
                    min(s.scores),
                    max(s.scores),
                ]
                for s in summaries
            ],
        )
        for s in summaries:
            run.summary[f"folds/{s.name}/mean"] = s.mean
            run.summary[f"folds/{s.name}/sd"] = s.sd
    shown = [imp for imp in found if imp.values]
    if shown:
        logged["compare/importance"] = wandb.Table(
            columns=["sweep", "parameter", "importance", "complete_trials"],
            data=[[imp.sweep, k, v, imp.trials] for imp in shown for k, v in imp.values.items()],
        )
        for imp in shown:
            for k, v in imp.values.items():
                run.summary[f"importance/{imp.sweep}/{k}"] = v
    run.log(logged)
    run.finish()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="aslfr-compare", description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", type=Path, help="directories holding run directories")
    ap.add_argument("--wandb-path", help="ENTITY/PROJECT: read online runs through the W&B API")
    ap.add_argument("--sweep", help="with --wandb-path: only this sweep's runs")
    ap.add_argument("--out", type=Path, help="PNG path (default: DIR/pareto.png)")
    ap.add_argument("--no-wandb", action="store_true", help="do not log the chart to W&B")
    ap.add_argument("--project", default="aslfr")
    ap.add_argument("--ensemble-size", type=int, default=3, help="most members of the proposed ensemble")
    args = ap.parse_args(argv)
    if not args.dirs and not args.wandb_path:
        ap.error("give run directories or --wandb-path")
    exit_on_error(compare)(args)


def propose_ensemble(rows: list[Row], most: int = 3) -> tuple[list[Row], float] | None:
    """The best ensemble the budget allows as far as the runs' own figures tell: finished runs
    within budget, of the best run's fold (an ensemble is scored on the sequences its members
    held out), taken best first while the sum of their latencies (an ensemble runs every
    member's encoder and decoder) stays within the budget; at most `most` members. -> the members
    and their summed latency, or None when fewer than two fit."""
    ok = [
        r
        for r in rows
        if r.status == "finished" and r.path and r.score is not None and r.latency_ms and r.budget_ms
        if r.budget_ok
    ]
    if len(ok) < 2:
        return None
    best = max(ok, key=lambda r: r.score)
    chosen, total = [], 0.0
    for r in sorted((r for r in ok if r.fold == best.fold), key=lambda r: -r.score):
        if len(chosen) < most and total + r.latency_ms <= best.budget_ms:
            chosen.append(r)
            total += r.latency_ms
    return (chosen, total) if len(chosen) >= 2 else None


def compare(args) -> None:
    rows = offline_rows(args.dirs) + (online_rows(args.wandb_path, args.sweep) if args.wandb_path else [])
    if not rows:
        raise DataError(
            f"no training runs found under {', '.join(map(str, args.dirs))} (a run "
            "directory holds .hydra/config.yaml)"
        )
    base = args.dirs[0] if args.dirs else Path(".")
    out = args.out or base / "pareto.png"
    print(leaderboard(rows))
    front = pareto_front(rows)
    print(f"\nPareto front (within budget): {', '.join(r.name for r in front) or 'none'}")
    proposal = propose_ensemble(rows, args.ensemble_size)
    if proposal:
        members, total = proposal
        print(
            f"ensemble proposal: {len(members)} runs of fold {members[0].fold}, latencies summing to "
            f"{total:.1f} of {members[0].budget_ms:.0f} ms; build, measure and score it with\n"
            f"  aslfr-export {' '.join(m.path for m in members)} --ensemble {base / 'ensemble'}"
        )
    found = [imp for d in args.dirs for imp in importances(d)]
    if found:
        print(f"\n{importance_table(found)}")
    print(f"plot: {plot(rows, out)}")
    if not args.no_wandb:
        log_to_wandb(rows, out, base / ".compare", args.project, group=base.name, found=found)


if __name__ == "__main__":
    main()
