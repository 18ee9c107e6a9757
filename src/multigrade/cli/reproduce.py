"""`mgdl reproduce` (the paper's experiments, with verdicts) and `mgdl report` (HTML)."""

from __future__ import annotations

from typing import Annotated, no_type_check

import typer
from rich.table import Table

from multigrade.cli._app import _guard, app, command_line, console, err_console, progress_bars
from multigrade.cli.options import DataDirOpt, Opt, QuietOpt, options


def _list(scale: str) -> None:
    from multigrade.experiments.presets import EXPERIMENTS, FAST_GROUPS, QUICK_ALL, select

    in_all = {e.name for e in select("all", scale)}
    table = Table(title=f"the paper's experiments ({scale} scale; * = in `all` at this scale)")
    for c in ("name", "group", "claims", "what", "size", "epochs / grade", "paper's figures"):
        table.add_column(c, justify="left")
    for e in EXPERIMENTS.values():
        if scale == "fast" and e.group not in FAST_GROUPS:
            continue
        cfg = e.config(scale)
        size = "full" if cfg.problem.size is None else f"{cfg.problem.size}²"
        if cfg.problem.task == "synthetic":
            size = f"setting {cfg.problem.setting}"
        paper = ", ".join(f"{k} {v}" for k, v in e.paper.items()
                          if k in ("mgdl", "sgdl", "msdl", "observed"))
        table.add_row(e.name + (" *" if e.name in in_all else ""), e.group,
                      ",".join(map(str, e.claims)), e.describe(scale), size, _budgets(cfg),
                      paper or "-")
    console.print(table)
    if scale == "quick":
        console.print(f"`all --scale quick` runs the restoration subset {', '.join(QUICK_ALL)} "
                      "and every other experiment; name any experiment to run it alone.")
    if scale == "fast":
        console.print("the fast scale: the restoration experiments at the paper's sizes, each "
                      "method with its own recipe (`--dump-config` prints both).")


def _budgets(cfg) -> str:
    """Epochs per grade, or each method's where their recipes differ."""
    from multigrade.experiments.building import method_config

    if cfg.methods.mgdl.train.keys() <= {"lr"} and cfg.methods.sgdl.train.keys() <= {"lr"}:
        return str(cfg.train.epochs)
    mgdl = method_config(cfg, "mgdl").train.budgets(cfg.model.grades)
    sgdl = method_config(cfg, "sgdl").train
    stages = "".join(f"{e}@{f}×+" for f, e in sgdl.stages())  # a curriculum's coarse grids
    return f"MGDL {'/'.join(map(str, mgdl))}, SGDL {stages}{sgdl.epochs}"


REPRODUCE = (
    Opt("name", Annotated[str | None, typer.Argument(
        help="An experiment, a group (regression, denoise, deblur, lr-study, eigen-study, "
        "msdl) or all.")], None),
    Opt("scale", Annotated[str, typer.Option(
        "--scale", help="quick (2 CPU cores, reduced sizes), fast (restoration at the "
        "paper's sizes on 2 CPU cores, each method's fast recipe) or paper (the paper's "
        "sizes and budgets; for a GPU).")],
        "quick"),
    Opt("seeds", Annotated[int, typer.Option(
        "--seeds", help="Runs per experiment (initialisation seeds 0..N-1).")], 1),
    Opt("vary_noise", Annotated[bool, typer.Option(
        "--vary-noise", help="Draw a new observation per seed (noise seed = seed); by "
        "default every seed restores the same one.")], False),
    Opt("list_", Annotated[bool, typer.Option(
        "--list", help="List the experiments and exit.")], False),
    Opt("dump_config", Annotated[bool, typer.Option(
        "--dump-config", help="Print the experiment's config (TOML) and exit.")], False),
    Opt("data_dir", DataDirOpt, None),
    Opt("overrides", Annotated[list[str] | None, typer.Option(
        "--set", help="Override one field of every experiment's config, e.g. --set "
        "train.epochs=500 (repeatable).")], None),
    Opt("out", Annotated[str | None, typer.Option(
        "--out", help="Reproduction directory (default runs/reproduce-<scale>); run again "
        "to skip what is done.")], None),
    Opt("report", Annotated[bool, typer.Option(
        "--report/--no-report", help="Write report.html in the reproduction directory.")],
        True),
    Opt("overwrite", Annotated[bool, typer.Option(
        "--overwrite", help="Train every run again, even those found completed.")], False),
    Opt("protocol", Annotated[str, typer.Option(
        "--protocol", help="authors: each method with the authors' settings (SPEC §3); "
        "fair: restoration only, both methods tuned on one grid without the clean image "
        "(SURE / held-out pixels), the oracle's choice beside it.")], "authors"),
    Opt("grid", Annotated[list[str] | None, typer.Option(
        "--grid", help="fair: replace one axis of the grid, e.g. --grid train.lr=1e-3,5e-3 "
        "(axes train.lr, problem.beta, problem.lam; repeatable).")], None),
    Opt("workers", Annotated[int | None, typer.Option(
        "--workers", help="fair: LocalCluster worker processes (default: one per core).")],
        None),
    Opt("quiet", QuietOpt, False),
)


@app.command("reproduce")
@_guard
@options(REPRODUCE)
def reproduce_cmd(ctx, name: str | None, scale: str, list_: bool, dump_config: bool,
                  protocol: str, **o):
    """Reproduce the paper: run its experiments, print our figures beside its, and a
    verdict per claim (holds / does not hold / inconclusive within the seed spread)."""
    from multigrade.experiments.presets import SCALES, select

    if scale not in SCALES:
        raise ValueError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if list_:
        _list(scale)
        return
    if name is None:
        raise ValueError("name an experiment, a group or all (`mgdl reproduce --list`)")
    if protocol not in ("authors", "fair"):
        raise ValueError(f"--protocol must be authors or fair, got {protocol!r}")
    chosen = select(name, scale)  # an unknown name is refused before anything starts
    overrides = o["overrides"] or []
    if dump_config:
        _dump_config(name, chosen, scale, o["data_dir"], overrides)
    elif protocol == "fair" and scale == "fast":
        raise ValueError("the fair protocol tunes each method on a grid of full-batch, "
                         "one-grid runs scored without the clean image; the fast recipes' "
                         "coarse grids and mini-batches do not go with its rules yet: use "
                         "--scale quick or paper")
    elif protocol == "fair":
        _fair(chosen, scale, o["seeds"], o["data_dir"], overrides, o["grid"] or [], o["out"],
              o["workers"], o["quiet"])
    elif o["grid"] or o["workers"] is not None:
        raise ValueError("--grid and --workers belong to --protocol fair")
    else:
        _authors(ctx, name, scale, overrides, o)


def _authors(ctx, name: str, scale: str, overrides: list[str], o: dict) -> None:
    """`reproduce --protocol authors`: the runs, the table of verdicts and the report."""
    from multigrade.experiments.reproduce import Watch, reproduce

    quiet = o["quiet"]

    def on_run(exp: str, seed: int, what: str) -> None:
        if not quiet:
            word = {"done": "done already", "train": "training", "resume": "resuming"}[what]
            err_console.print(f"[bold]{exp}[/bold] seed {seed}: {word}")

    with progress_bars(quiet) as progress:
        result = reproduce(name, scale=scale, seeds=o["seeds"], data_dir=o["data_dir"],
                           out=f"runs/reproduce-{scale}" if o["out"] is None else o["out"],
                           overrides=overrides, vary_noise=o["vary_noise"],
                           overwrite=o["overwrite"], command=command_line(ctx),
                           watch=Watch(progress, on_run))
    _print_reproduction(result)
    if o["report"]:
        from multigrade.report_html import write_report

        path = write_report([result.out], result.out / "report.html")
        console.print(f"report: {path}")


def _fair(chosen: list, scale: str, seeds: int, data_dir, overrides: list[str],
          grid: list[str], out: str | None, workers: int | None, quiet: bool) -> None:
    """`reproduce --protocol fair`: each restoration experiment of `chosen` into
    OUT/<experiment> (resumable), its summary printed."""
    from pathlib import Path

    from multigrade import runs
    from multigrade.experiments.cluster import client as cluster_client
    from multigrade.experiments.fair import fair, markdown, parse_grid
    from multigrade.experiments.reproduce import experiment_config

    axes = parse_grid(grid)
    restoration = [e for e in chosen if e.group in ("denoise", "deblur")]
    if not restoration:
        raise ValueError("the fair protocol tunes restoration experiments (denoise, deblur); "
                         f"none among {', '.join(e.name for e in chosen)}")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    root = Path(f"runs/fair-{scale}" if out is None else out)
    configs = {e.name: experiment_config(e, scale, data_dir, overrides) for e in restoration}
    held = runs.claim_or_open(root, "reproduction", what="the fair protocol")
    with held:
        client, cluster = cluster_client(None, workers)
        try:
            for e in restoration:
                if not quiet:
                    err_console.print(f"[bold]{e.name}[/bold]: fair protocol, "
                                      f"{len(list(_product(axes)))} settings × 2 methods, "
                                      f"then {seeds} seeds of each choice")
                summary = fair(configs[e.name], root / e.name, seeds=seeds, grid=axes,
                               client=client)
                console.print(markdown(summary), markup=False, highlight=False)
        finally:
            client.close()
            cluster.close()
    console.print(f"fair protocol: {root}")


def _product(axes: dict):
    import itertools

    return itertools.product(*axes.values())


def _dump_config(name: str, chosen: list, scale: str, data_dir, overrides: list[str]) -> None:
    from multigrade import runs
    from multigrade.experiments.reproduce import experiment_config

    if len(chosen) != 1:
        raise ValueError(f"--dump-config prints one experiment; {name!r} is "
                         f"{len(chosen)} of them")
    cfg = experiment_config(chosen[0], scale, data_dir, overrides)
    print(runs.toml_text(cfg.to_dict()), end="")


def _print_reproduction(result) -> None:
    """The summary table (the notes in a second table), then where the summary is."""
    from multigrade.experiments.reproduce import COLUMNS, table_rows

    seeds = result.seeds
    table = Table(title=f"reproduction ({result.scale} scale, {seeds} "
                        f"seed{'s' * (seeds > 1)}): ours (mean ± std) beside the paper's")
    for c in COLUMNS[:-1]:  # the notes are in summary.md and the report
        table.add_column(c, justify="left" if c in ("experiment", "measure", "verdict",
                                                     "other") else "right",
                         no_wrap=c in ("experiment", "verdict"))
    for cells in table_rows(result.rows):
        table.add_row(*cells[:-1])
    console.print(table)
    notes = Table(title="notes: observations, oracle-tuned baselines, per-grade figures")
    notes.add_column("experiment", no_wrap=True)
    notes.add_column("claim", justify="right")
    notes.add_column("notes")
    for r in result.rows:
        if r["extra"]:
            notes.add_row(r["experiment"], str(r["claim"]), r["extra"])
    if notes.rows:
        console.print(notes)
    console.print(f"summary: {result.out / 'summary.md'} ({result.ran} runs trained now)")


@app.command("report")
@_guard
@no_type_check  # Typer passes its own (vendored) Click context as ctx
def report_cmd(
    run_dirs: Annotated[list[str], typer.Argument(
        help="Run directories, comparisons, studies or reproduction directories.")],
    output: Annotated[str, typer.Option("-o", "--output", help="The HTML file to write.")] =
        "report.html",
):
    """One self-contained HTML report (figures embedded) of the given runs."""
    from multigrade.report_html import write_report

    path = write_report(run_dirs, output)
    console.print(f"report: {path}")
