"""What a run's config builds: its problem (the image, the task's files, held-out pixels),
its selection rule, each grade's problem (coarse grids, mini-batches), each method's config
and problem in a comparison, and the one set of `fit` arguments that fit, compare, resume
and the replay of a finished run share (`fit_arguments`). A memory check refuses a size
the machine cannot hold before any work."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import jax
import numpy as np

from multigrade._types import Array
from multigrade.experiments.config import (
    MGDL_TRAIN_FIELDS,
    SGDL_TRAIN_FIELDS,
    InputsConfig,
    ModelConfig,
    ProblemConfig,
    RunConfig,
)
from multigrade.problems import Curriculum, Problem
from multigrade.problems.minibatch import minibatch
from multigrade.train import Divergence, Selector


def load_clean_image(pcfg: ProblemConfig, inputs: InputsConfig | None = None) -> np.ndarray:
    """The clean image of a problem: from the pinned file when `inputs` pins one (its
    content checked against the pinned SHA-256), else found by name."""
    from multigrade.images import check_pin, load_image

    name = pcfg.image
    if inputs is not None and inputs.image is not None:
        name = check_pin(inputs.image, inputs.image_sha256, inputs.image_version)
    return load_image(name, size=pcfg.size, data_dir=pcfg.data_dir, gray=not pcfg.color)


def pinned(cfg: RunConfig) -> RunConfig:
    """`cfg` with its inputs pinned as they are now: what a new run records (the image
    file's absolute path and SHA-256; a built-in image's name and version)."""
    from multigrade.experiments import tasks
    from multigrade.images import pin

    task, p = tasks.get(cfg.problem.task), cfg.problem
    if not task.image:
        return dataclasses.replace(cfg, inputs=InputsConfig())
    files = {}
    for field in task.files:
        if getattr(p, field) is not None:
            found = pin(getattr(p, field), p.data_dir)
            files.update({field: found["image"], f"{field}_sha256": found["image_sha256"]})
    return dataclasses.replace(cfg, inputs=InputsConfig(**pin(p.image, p.data_dir), **files))


def build_problem(pcfg: ProblemConfig, inputs: InputsConfig | None = None) -> Problem:
    """The problem a config describes (loads the image and the task's files, draws the
    noise), built by its task (`tasks.TASKS`)."""
    from multigrade.experiments import tasks

    task = tasks.get(pcfg.task)
    clean = load_clean_image(pcfg, inputs) if task.image else None
    return task.build(pcfg, clean, _task_files(task, pcfg, inputs))


def _task_files(task, pcfg: ProblemConfig, inputs: InputsConfig | None) -> dict:
    """The files a task reads beside its image (an inpainting mask), loaded at the image's
    size, from their pinned copies when `inputs` pins them."""
    from multigrade.images import check_pin, load_image

    found = {}
    for field in task.files:
        name = getattr(pcfg, field)
        if name is None:
            continue
        pinned = None if inputs is None else getattr(inputs, field)
        if pinned is not None:
            name = check_pin(pinned, getattr(inputs, f"{field}_sha256"))
        found[field] = load_image(name, size=pcfg.size, data_dir=pcfg.data_dir, gray=True)
    return found


def problem_for(cfg: RunConfig) -> Problem:
    """The problem a run trains on: `build_problem`, with the held-out pixels of
    `train.select = "holdout"` (drawn from the noise seed: the same for every method)."""
    problem = build_problem(cfg.problem, cfg.inputs)
    if cfg.train.select == "holdout" and not cfg.is_study:
        key = jax.random.fold_in(jax.random.key(cfg.problem.noise_seed), 1)
        problem = problem.held_out(cfg.train.holdout, key)
    return problem


@dataclasses.dataclass(frozen=True)
class Selection:
    """How a run chooses epochs and grades without the clean image (`multigrade.selection`):
    the rule, the noise level it uses and where that came from, and SURE's probes."""

    mode: str
    sigma: float | None = None  # in image units
    sigma_source: str | None = None  # "given" or "estimated"
    selector: Selector | None = None
    probes: Array | None = None  # (p, *observation shape), for SURE
    eps: float | None = None  # SURE's finite-difference step (image units); None: exact
    holdout: float | None = None  # the fraction of pixels held out

    def divergence(self) -> Divergence | None:
        """What `fit(divergence=...)` takes: SURE's probes and step (None without SURE)."""
        return None if self.probes is None else Divergence(self.probes, self.eps)

    def describe(self) -> dict:
        out = {"mode": self.mode}
        if self.sigma is not None:
            out.update(noise_level=self.sigma * 255, noise_level_source=self.sigma_source)
        if self.selector is not None:
            out.update(self.selector.settings())
        if self.probes is not None:
            out["sure_probes"] = int(self.probes.shape[0])
            out["sure_eps"] = None if self.eps is None else self.eps * 255
        if self.holdout is not None:
            out["holdout"] = self.holdout
        return out


def selection_for(cfg: RunConfig, problem: Problem) -> Selection:
    """The `Selection` of a run: σ given (`train.noise_level`) or estimated from the
    observation, the selector, and SURE's probe vectors (drawn from the noise seed)."""
    from multigrade import selection

    t = cfg.train
    if t.select == "none" or cfg.is_study:
        return Selection("none")
    if t.select == "holdout":
        return Selection("holdout", selector=selection.Holdout(), holdout=t.holdout)
    from multigrade.experiments import tasks

    observed = np.asarray(problem.observed)
    if t.noise_level is not None:
        sigma, source = t.noise_level / 255, "given"
    else:
        sigma, source = tasks.get(cfg.problem.task).noise_level(problem), "estimated"
    sel = selection.selector(t.select, sigma=sigma, n=problem.observed_values())
    probes = eps = None
    if t.select == "sure":
        key = jax.random.fold_in(jax.random.key(cfg.problem.noise_seed), 2)
        probes = jax.random.normal(key, (t.sure_probes, *observed.shape))
        eps = t.sure_eps * sigma if t.sure_eps > 0 else None
    return Selection(t.select, sigma, source, sel, probes, eps)


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def estimate_bytes(pixels: int, channels: int, mcfg: ModelConfig, method: str) -> int:
    """A rough upper estimate of the memory a run takes: the image and its copies, and per
    sample the activations a grade keeps for its backward pass, the cached features and
    the predictions of every split."""
    itemsize = 8 if jax.config.jax_enable_x64 else 4
    depth = mcfg.depth if method == "sgdl" else mcfg.layers
    per_sample = itemsize * (mcfg.width * (2 * depth + 4) + 8 * channels)
    return int(pixels * (per_sample * 1.5 + 8 * channels * 6))


def check_memory(pcfg: ProblemConfig, mcfg: ModelConfig, shape: tuple[int, ...] | None,
                 methods: Sequence[str]) -> None:
    """Refuses, before any work, a size whose memory would exceed this machine's."""
    if pcfg.task == "synthetic":
        return
    if shape is None:
        if pcfg.size is None:
            return
        shape = (pcfg.size, pcfg.size, 3 if pcfg.color else 1)
    pixels = int(shape[0]) * int(shape[1])
    channels = int(shape[2]) if len(shape) > 2 else 1
    need = max(estimate_bytes(pixels, channels, mcfg, m) for m in methods)
    have = _physical_memory()
    if have is not None and need > have:
        raise ValueError(f"an image of {shape[0]} × {shape[1]} pixels needs about "
                         f"{need / 2**30:.0f} GiB to train; this machine has "
                         f"{have / 2**30:.0f} GiB (choose a smaller --size)")


BATCH_STREAM = 0x6D62  # folded into the seed's key: the mini-batches' draws


def grade_problems(problem: Problem, cfg: RunConfig, grades: int
                   ) -> Problem | Curriculum | list[Problem]:
    """What each of `grades` grades fits: `problem`, or with `train.coarse` the first
    grades on coarser grids of it (coarse-to-fine), and with `train.batch` the grades on
    its own grid trained on random mini-batches of its pixels (of tiles of them with
    `train.batch_tile`); with `train.curriculum`,
    a `Curriculum`: the coarser grids first, then that."""
    factors = cfg.train.coarse[:grades]
    tiled = problem if cfg.train.batch_tile is None else problem.in_tiles(cfg.train.batch_tile)
    full = problem if cfg.train.batch is None else minibatch(
        tiled, float(cfg.train.batch),
        jax.random.fold_in(jax.random.key(cfg.train.seed), BATCH_STREAM))
    if cfg.train.curriculum:
        return Curriculum(tuple((problem.coarse(f), e) for f, e in cfg.train.stages()), full)
    if not factors:
        return full
    coarse = {f: problem.coarse(f) for f in set(factors)}  # one object per grid
    return [coarse[f] for f in factors] + [full] * (grades - len(factors))


def fit_arguments(cfg: RunConfig, problem: Problem, grades: int | None = None) -> dict:
    """`fit`'s arguments that a run's config fixes: the model (its first `grades` grades
    when given: a finished run replayed), each grade's problem, optimiser and budget, the
    key, the record interval, the stopping tolerance and each grade's tries (and the rule
    that keeps one). Training, resuming, loading a checkpoint and replaying all take them
    from here, so they cannot disagree."""
    model = cfg.model.build(problem.out_dim)
    if grades is not None and grades < model.num_grades:
        model = model.first(grades)
    n = model.num_grades
    return dict(model=model, problem=grade_problems(problem, cfg, n),
                optimizer=cfg.train.optimizers(n), epochs=cfg.train.budgets(n),
                key=jax.random.key(cfg.train.seed), record_every=cfg.train.record_every,
                tol=cfg.train.tol, tries=cfg.train.tries(n), try_rule=cfg.train.try_rule)


def method_config(cfg: RunConfig, method: str, grades: int | None = None) -> RunConfig:
    """A comparison's `fit` of MGDL, or of SGDL with the depth of `grades` grades (the
    grades MGDL kept, under adaptive grades)."""
    model = dataclasses.replace(cfg.model, method=method, baselines=(),
                                archs=cfg.model.archs if method == "mgdl" else (),
                                grades=cfg.model.grades if grades is None else grades)
    train = dataclasses.replace(cfg.train, **dict.fromkeys(SGDL_TRAIN_FIELDS, ())) \
        if method == "mgdl" else dataclasses.replace(  # SGDL: one grade
            cfg.train, min_gain=None, **dict.fromkeys(MGDL_TRAIN_FIELDS, ()))
    return dataclasses.replace(cfg, command="fit", model=model, train=train).for_method(method)


def method_problem(problem: Problem, cfg: RunConfig) -> Problem:
    """A comparison's problem as one method trains it: the same observation, with that
    method's splitting weights β and λ (`[methods.<method>]`)."""
    from multigrade._types import as_float
    from multigrade.problems import Restoration

    if not isinstance(problem, Restoration):
        return problem
    if float(problem.beta) == cfg.problem.beta and float(problem.lam) == cfg.problem.lam:
        return problem
    return dataclasses.replace(problem, beta=as_float(cfg.problem.beta),
                               lam=as_float(cfg.problem.lam))
