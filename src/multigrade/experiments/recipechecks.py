"""The training recipe's rules across a run config's sections (`RunConfig` checks them
when made): coarse grades, a curriculum, per-grade budgets and tries, mini-batches, each
against the task, the method and the no-reference rule."""

from __future__ import annotations

from multigrade.experiments import tasks


def check_recipe(cfg) -> None:
    """Refuses, with one line, a recipe option that does not fit the run `cfg`."""
    if cfg.train.coarse:
        _coarse(cfg)
    if cfg.train.curriculum:
        _curriculum(cfg)
    for name in ("grade_epochs", "grade_tries"):
        if getattr(cfg.train, name):
            _per_grade(cfg, name)
    if cfg.train.batch is not None and not cfg.is_study:
        _batch(cfg)
    if cfg.train.batch_tile is not None and not cfg.is_study:
        _batch_tile(cfg)


def _batch(cfg) -> None:
    if not tasks.get(cfg.problem.task).batches:
        raise ValueError(f"mini-batches (train.batch) need a pixel-wise degradation or "
                         f"a blur: {cfg.problem.task}'s mixes whole rows and columns")
    if cfg.train.select == "sure":
        raise ValueError("mini-batches (train.batch) and --select sure: SURE's "
                         "divergence follows full-batch training")


def _batch_tile(cfg) -> None:
    if cfg.train.batch is None:
        raise ValueError("train.batch_tile shapes the mini-batches of train.batch: give "
                         "--batch too")
    if not tasks.get(cfg.problem.task).restoration:
        raise ValueError(f"train.batch_tile: tiles are a restoration's ({cfg.problem.task}'s "
                         "mini-batches are of samples, with no neighbours to share)")


def _per_grade(cfg, name: str) -> None:
    """MGDL's `train.grade_epochs` or `train.grade_tries`: at most one per grade."""
    n = len(getattr(cfg.train, name))
    if cfg.model.method != "mgdl" and cfg.command == "fit":
        raise ValueError(f"{name} are MGDL's; method {cfg.model.method} has one "
                         "grade of train.epochs")
    if n > cfg.model.grades:
        raise ValueError(f"train.{name} gives {n} {'budgets' if 'epochs' in name else 'counts'}"
                         f" for {cfg.model.grades} grades")


def _coarse(cfg) -> None:
    t = cfg.train
    _coarsens(cfg, "coarse grades (train.coarse)")
    if cfg.model.method != "mgdl" and cfg.command == "fit":
        raise ValueError(f"coarse grades (train.coarse) are MGDL's; method "
                         f"{cfg.model.method} has one grade")
    if len(t.coarse) >= cfg.model.grades:
        raise ValueError(f"train.coarse gives {len(t.coarse)} factors for "
                         f"{cfg.model.grades} grades: the last grade fits the image's "
                         "own grid")
    _judged(cfg, "coarse grades (train.coarse)", "every grade", "a coarse grade",
            "the grades")


def _curriculum(cfg) -> None:
    _coarsens(cfg, "a curriculum (train.curriculum)")
    if cfg.command == "fit" and cfg.model.method == "mgdl" and cfg.model.grades > 1:
        raise ValueError("a curriculum (train.curriculum) trains one network coarse to "
                         "fine (SGDL); MGDL's grades go coarse to fine with train.coarse")
    _judged(cfg, "a curriculum (train.curriculum)", "the training", "a coarse stage",
            "the last stage")


def _coarsens(cfg, what: str) -> None:
    """Coarser grids need a degradation that restricts to them."""
    if not tasks.get(cfg.problem.task).coarsens:
        grids = ", ".join(tasks.names(coarsens=True))
        raise ValueError(f"{what} need{'s' * what.startswith('a ')} a degradation that "
                         f"restricts to a coarser grid ({grids}), not {cfg.problem.task}")


def _judged(cfg, what: str, through: str, coarse: str, judged: str) -> None:
    """The no-reference rules that coarser grids allow: discrepancy, not SURE or holdout."""
    why = {"sure": f"SURE's divergence follows one observation through {through}",
           "holdout": f"{coarse}'s block means would read the held-out pixels"}
    if cfg.train.select in why:
        raise ValueError(f"{what} and --select {cfg.train.select}: {why[cfg.train.select]}; "
                         f"--select discrepancy judges {judged} on the image's own grid")
