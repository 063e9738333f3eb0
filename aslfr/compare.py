"""Compare runs: a leaderboard and a Pareto plot of score against inference latency.

    python -m aslfr.compare DIR [DIR ...] [--out pareto.png] [--no-wandb]
    python -m aslfr.compare --wandb-path ENTITY/PROJECT [--sweep SWEEP_ID]     (online runs)

Offline runs are read from their `run-*.wandb` files (`aslfr.wandb_offline`) under each DIR
(a sweep directory, `outputs/`, `multirun/`, or single run directories); online runs through the
W&B API. The plot (val/score against infer/latency_ms, the Pareto front of the runs within budget,
the budget line) is written as a PNG and logged to W&B with the leaderboard as a table.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .wandb_offline import read_runs

SCORE, LATENCY = "val/score", "infer/latency_ms"


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

    @classmethod
    def from_run(cls, name: str, config: Mapping, summary: Mapping) -> "Row":
        model = config.get("model", {})
        score = summary.get("best/val/score", summary.get(SCORE))
        if isinstance(score, Mapping):  # W&B keeps "max" when the metric was defined so
            score = score.get("max")

        def stack(k):
            s = model.get(k, {})
            return f"{s.get('depth')}x{s.get('width')}" if s else "?"

        return cls(name=name, score=_num(score), latency_ms=_num(summary.get(LATENCY)),
                   model_mb=_num(summary.get("infer/model_mb")),
                   params=int(summary["params"]) if summary.get("params") else None,
                   encoder=stack("encoder"), decoder=stack("decoder"),
                   budget_ok=summary.get("budget/ok"), fold=config.get("data", {}).get("fold"),
                   budget_ms=_num(config.get("budget", {}).get("latency_ms")))


def _num(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def offline_rows(dirs: Iterable[Path]) -> list[Row]:
    rows = []
    for d in dirs:
        for run in read_runs(Path(d)):
            if "model" in run.config:  # training runs only (not a previous comparison)
                where = run.paths[0].parents[2].name if run.paths else ""  # the run directory
                rows.append(Row.from_run(f"{run.name or run.id} {where}".strip(), run.config,
                                         run.summary))
    return rows


def online_rows(path: str, sweep: str | None = None) -> list[Row]:
    import wandb

    api = wandb.Api()
    runs = api.sweep(f"{path}/{sweep}").runs if sweep else api.runs(path)
    return [Row.from_run(r.name, dict(r.config), dict(r.summary)) for r in runs
            if "model" in r.config]


def pareto_front(rows: list[Row]) -> list[Row]:
    """Within-budget runs that no other within-budget run beats on both score and latency."""
    ok = sorted((r for r in rows if r.budget_ok and r.score is not None and r.latency_ms),
                key=lambda r: (r.latency_ms, -r.score))
    front, best = [], -math.inf
    for r in ok:
        if r.score > best:
            front.append(r)
            best = r.score
    return front


def leaderboard(rows: list[Row]) -> str:
    head = (f"{'run':42} {'val/score':>9} {'ms':>7} {'MB':>6} {'params':>10} {'encoder':>8} "
            f"{'decoder':>8} {'budget':>6} {'fold':>4}")
    lines = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: -(r.score if r.score is not None else -math.inf)):
        fmt = lambda v, f: format(v, f) if v is not None else "-"  # noqa: E731
        ok = {True: "ok", False: "OVER", None: "-"}[r.budget_ok]
        lines.append(f"{r.name[:42]:42} {fmt(r.score, '.4f'):>9} {fmt(r.latency_ms, '.1f'):>7} "
                     f"{fmt(r.model_mb, '.2f'):>6} {fmt(r.params, ','):>10} {r.encoder:>8} "
                     f"{r.decoder:>8} {ok:>6} {fmt(r.fold, 'd'):>4}")
    return "\n".join(lines)


def plot(rows: list[Row], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    shown = [r for r in rows if r.latency_ms is not None and r.score is not None]
    for ok, marker, label in ((True, "o", "within budget"), (False, "x", "over budget")):
        pts = [r for r in shown if bool(r.budget_ok) == ok]
        if pts:
            ax.scatter([r.latency_ms for r in pts], [r.score for r in pts], marker=marker,
                       label=label, alpha=0.8)
    front = pareto_front(rows)
    if front:
        ax.step([r.latency_ms for r in front], [r.score for r in front], where="post",
                color="C2", label="Pareto front")
        for r in front:
            ax.annotate(f"e{r.encoder} d{r.decoder}", (r.latency_ms, r.score), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    budgets = {r.budget_ms for r in rows if r.budget_ms}
    if len(budgets) == 1 and shown:  # drawn when the runs share one, and it is in view
        (budget,) = budgets
        if budget <= 3 * max(r.latency_ms for r in shown):
            ax.axvline(budget, color="red", linestyle="--", label="budget.latency_ms")
    ax.set_xlabel("inference latency, ms per sequence (LiteRT, 1 thread)")
    ax.set_ylabel("val/score (held-out signers)")
    ax.set_title(f"{len(shown)} runs: score against latency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def log_to_wandb(rows: list[Row], png: Path, where: Path, project: str, group: str) -> None:
    import wandb

    from .tracking import resolve_mode

    Path(where).mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, job_type="compare", group=group, dir=str(where),
                     mode=resolve_mode("auto"), config={"compare": {"runs": len(rows)}},
                     settings=wandb.Settings(console="off", x_disable_stats=True, silent=True))
    table = wandb.Table(columns=["run", "val/score", "latency_ms", "model_mb", "params",
                                 "encoder", "decoder", "budget_ok", "fold"],
                        data=[[r.name, r.score, r.latency_ms, r.model_mb, r.params, r.encoder,
                               r.decoder, r.budget_ok, r.fold] for r in rows])
    run.log({"compare/pareto": wandb.Image(str(png)), "compare/leaderboard": table,
             "compare/score_vs_latency": wandb.plot.scatter(table, "latency_ms", "val/score",
                                                            title="val/score vs latency")})
    run.finish()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m aslfr.compare", description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", type=Path, help="directories holding offline runs")
    ap.add_argument("--wandb-path", help="ENTITY/PROJECT: read online runs through the W&B API")
    ap.add_argument("--sweep", help="with --wandb-path: only this sweep's runs")
    ap.add_argument("--out", type=Path, help="PNG path (default: DIR/pareto.png)")
    ap.add_argument("--no-wandb", action="store_true", help="do not log the chart to W&B")
    ap.add_argument("--project", default="aslfr")
    args = ap.parse_args(argv)
    if not args.dirs and not args.wandb_path:
        ap.error("give run directories or --wandb-path")
    rows = offline_rows(args.dirs) + (online_rows(args.wandb_path, args.sweep)
                                      if args.wandb_path else [])
    if not rows:
        raise SystemExit(f"no training runs found under {', '.join(map(str, args.dirs))}")
    base = args.dirs[0] if args.dirs else Path(".")
    out = args.out or base / "pareto.png"
    print(leaderboard(rows))
    front = pareto_front(rows)
    print(f"\nPareto front (within budget): {', '.join(r.name for r in front) or 'none'}")
    print(f"plot: {plot(rows, out)}")
    if not args.no_wandb:
        log_to_wandb(rows, out, base / ".compare", args.project, group=base.name)


if __name__ == "__main__":
    main()
