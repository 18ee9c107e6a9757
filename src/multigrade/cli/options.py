"""Options shared by several commands (Typer `Annotated` aliases), and the option groups
that `fit` and `compare` commands are made of (`Opt`, `options`)."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

ImageOpt = Annotated[str, typer.Option(
    "--image", help="Built-in image name (camera, astronaut, moon, coins, ...) or a file path.")]
SizeOpt = Annotated[int | None, typer.Option(
    "--size", help="Resize the image to SIZE × SIZE pixels (default: keep its size).")]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="Folder to search for image names (also $MULTIGRADE_DATA).")]
GradesOpt = Annotated[str, typer.Option(
    "--grades", help="Number of grades K (SGDL: total depth is K × layers-per-grade), or "
    "auto: add grades while the validation PSNR gains --min-gain dB, up to --max-grades.")]
MaxGradesOpt = Annotated[int, typer.Option(
    "--max-grades", help="--grades auto: the most grades tried.")]
MinGainOpt = Annotated[float | None, typer.Option(
    "--min-gain", help="--grades auto: the least validation PSNR gain (dB) that keeps a "
    "grade (default 0.1; giving it implies --grades auto).")]
LayersOpt = Annotated[int, typer.Option(
    "--layers-per-grade", help="Hidden layers per grade.")]
WidthOpt = Annotated[int, typer.Option("--width", help="Units in every hidden layer.")]
InitOpt = Annotated[str, typer.Option(
    "--init", help="Weight initialiser: glorot (paper §4) or he (paper §5-6).")]
OptimOpt = Annotated[str, typer.Option(
    "--optimizer", help="gd (full-batch gradient descent) or any Optax optimiser name.")]
LrOpt = Annotated[str, typer.Option(
    "--lr", help="Learning rate, or auto[:c] with --optimizer gd: η = c·2/λ_max of each "
    "grade's loss Hessian at its start (c = 0.5).")]
LowerLrOpt = Annotated[bool, typer.Option(
    "--lower-lr", help="With --lr auto: at each re-estimate, lower η to c·2/λ_max when "
    "λ_max has risen past 2/η.")]
EigStopOpt = Annotated[bool, typer.Option(
    "--eig-stop", help="GD: end a grade when the smallest eigenvalue of I − ηH falls below "
    "−0.95 (the reference code's stop).")]
SharpnessEveryOpt = Annotated[int | None, typer.Option(
    "--sharpness-every", help="Epochs between λ_max estimates for --lower-lr and "
    "--eig-stop (default 100).")]
ArchsOpt = Annotated[str | None, typer.Option(
    "--archs", help="MGDL grades' architectures, comma-separated (one name: every grade): "
    "relu, fourier (random Fourier features first), siren.")]
FourierSigmaOpt = Annotated[float, typer.Option(
    "--fourier-sigma", help="Fourier-feature grades: the scale σ of B ~ N(0, σ²).")]
Omega0Opt = Annotated[float, typer.Option("--omega0", help="SIREN grades: ω₀.")]
BaselinesOpt = Annotated[str | None, typer.Option(
    "--baselines", help="Coordinate networks beside MGDL and SGDL, sized to MGDL's parameter "
    "count: ffn (random Fourier features, σ chosen from --fourier-sigmas), siren.")]
FourierSigmasOpt = Annotated[str | None, typer.Option(
    "--fourier-sigmas", help="The FFN baseline's σ grid (default 1,3,10,30).")]
BaselineLrOpt = Annotated[float | None, typer.Option(
    "--baseline-lr", help="The baselines' learning rate (default with Adam: their papers', "
    "FFN 1e-3, SIREN 1e-4; otherwise --lr).")]
EpochsOpt = Annotated[int, typer.Option(
    "--epochs", help="Epochs per grade (SGDL trains the same number).")]
RecordOpt = Annotated[int, typer.Option(
    "--record-every", help="Epochs between recorded metrics.")]
ScheduleOpt = Annotated[str, typer.Option(
    "--schedule", help="The learning rate along each grade: constant, cosine (decay to 1 % "
    "of --lr) or warmup-cosine (5 % of the epochs rising from 0 first).")]
CoarseOpt = Annotated[str | None, typer.Option(
    "--coarse", help="Denoising or deblurring, MGDL: the first grades fitted on coarser "
    "grids of the observation (block means; a blur restricted to the grid), e.g. 4,2: grade "
    "1 on a 4× coarser grid, grade 2 on 2×, the rest on the image's own (coarse-to-fine).")]
GradeEpochsOpt = Annotated[str | None, typer.Option(
    "--grade-epochs", help="MGDL: the first grades' own epochs, e.g. 2000,2000 (the rest "
    "train --epochs; a schedule runs over each grade's own).")]
CurriculumOpt = Annotated[str | None, typer.Option(
    "--curriculum", help="Denoising or deblurring, SGDL (one network): train it on coarser "
    "grids first, e.g. 4,2: a 4× coarser grid, then 2×, then the image's own, one state "
    "throughout (the coarse stages' epochs come before --epochs).")]
CurriculumEpochsOpt = Annotated[str | None, typer.Option(
    "--curriculum-epochs", help="The curriculum's coarse stages' epochs, e.g. 3000,1000 "
    "(a stage without one trains --epochs; a schedule runs over all of them).")]
GradeTriesOpt = Annotated[str | None, typer.Option(
    "--grade-tries", help="MGDL: train the first grades this many times each from fresh "
    "initialisations and keep the try of least training loss (no reference needed), e.g. "
    "1,3: grade 2 three times (the rest once).")]
TryRuleOpt = Annotated[str, typer.Option(
    "--try-rule", help="Which of --grade-tries' tries a grade keeps: loss (least training "
    "loss) or erank (the highest effective rank of its features, what the next grade "
    "learns from); neither reads the clean image.")]
BatchOpt = Annotated[float | None, typer.Option(
    "--batch", help="Train the grades on the image's own grid on random mini-batches of "
    "this fraction of the pixels, e.g. 0.125 (an epoch is then one step on a batch; not "
    "for deblurring or --select sure).")]
BatchTileOpt = Annotated[int | None, typer.Option(
    "--batch-tile", help="Draw --batch's mini-batches as square tiles of this side, e.g. 16 "
    "(denoising, inpainting: (side+1)² network values per side² pixels, where scattered "
    "pixels cost 3 each; a blur's batches are always tiles, by default of 32 or more).")]
TolOpt = Annotated[float | None, typer.Option(
    "--tol", help="Tolerance of the validation stopping rule (default: train the full budget).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
OutOpt = Annotated[str | None, typer.Option(  # str: Typer would make "" the path "."
    "--out", help="Run directory, new or empty (default runs/<kind>-<time>-<id>).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
ColorOpt = Annotated[bool, typer.Option(
    "--color", help="Keep colour: one network output per channel (default: convert to gray).")]
MethodOpt = Annotated[str, typer.Option(
    "--method", help="mgdl, sgdl, ffn (random Fourier features) or siren.")]
SigmaOpt = Annotated[float, typer.Option(
    "--sigma", help="Noise standard deviation in units of 1/255 (paper: 10, 20, ..., 60).")]
BlurSigmaOpt = Annotated[float, typer.Option(
    "--blur-sigma", help="Gaussian blur σ_b in pixels (kernel 6σ_b + 1; paper: 3, 5, 7).")]
NoiseOpt = Annotated[float, typer.Option(
    "--noise", help="Noise standard deviation in units of 1/255 (paper: 3).")]
BetaOpt = Annotated[float, typer.Option("--beta", help="TV splitting coupling weight β.")]
LamOpt = Annotated[float, typer.Option("--lam", help="TV weight λ.")]
# Restoration: unset, each method takes the authors' value (SPEC §3, presets.AUTHORS)
_AUTHORS = ("default: the authors' per-method values, denoising MGDL {d_m}, SGDL {d_s}; "
            "deblurring MGDL {b_m}, SGDL {b_s} (SPEC §3); inpainting {i}; given, it applies "
            "to every method")
RestLrOpt = Annotated[str | None, typer.Option("--lr", help="Learning rate, or auto[:c] with "
    "--optimizer gd. " + _AUTHORS.format(d_m="5e-3", d_s="5e-3", b_m="5e-3", b_s="5e-3", i="1e-3")
    + "; with another optimiser than adam, 1e-3.")]
RestBetaOpt = Annotated[float | None, typer.Option("--beta", help="TV splitting coupling "
    "weight β. " + _AUTHORS.format(d_m="1", d_s="0.1", b_m="1e-2", b_s="0.1", i="0.1") + ".")]
RestLamOpt = Annotated[float | None, typer.Option("--lam", help="TV weight λ. " + _AUTHORS.format(
    d_m="1e-2", d_s="1e-4", b_m="1e-1", b_s="0.1", i="0.01") + ".")]
AlphaOpt = Annotated[float, typer.Option("--alpha", help="Relaxation α of the u update.")]
NoiseSeedOpt = Annotated[int, typer.Option(
    "--noise-seed", help="Seed of the observation's noise (kept apart from --seed).")]


OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Replace an existing run directory at --out (it is cleared first).")]
CheckpointOpt = Annotated[int, typer.Option(
    "--checkpoint-every", help="Epochs between checkpoints within a grade (finished grades "
    "are always saved at once).")]
SelectOpt = Annotated[str, typer.Option(
    "--select", help="Choose epochs and grades without the clean image: sure (denoising), "
    "discrepancy, holdout, or none (the fixed budget).")]
NoiseLevelOpt = Annotated[float | None, typer.Option(
    "--noise-level", help="σ_n that --select sure|discrepancy assume, in units of 1/255 "
    "(default: estimated from the observation).")]
HoldoutOpt = Annotated[float, typer.Option(
    "--holdout", help="--select holdout: the fraction of pixels hidden from the loss.")]
SureProbesOpt = Annotated[int, typer.Option(
    "--sure-probes", help="--select sure: random probes of the divergence (each costs about "
    "one more pass per epoch).")]
SureEpsOpt = Annotated[float, typer.Option(
    "--sure-eps", help="--select sure: the divergence's finite-difference step in units of "
    "σ_n (0: exact derivatives, forward mode).")]
MissingOpt = Annotated[float, typer.Option(
    "--missing", help="Inpainting: the fraction of pixels missing, drawn at random from "
    "--noise-seed (unless --mask is given).")]
MaskOpt = Annotated[str | None, typer.Option(
    "--mask", help="Inpainting: a mask image of the same scene (resized with --size), white "
    "where a pixel is seen, black where it is missing.")]


# --------------------------------------------------------------------------------------
# Option groups: a command is a list of them (`options`), so no option list is written twice


@dataclasses.dataclass(frozen=True)
class Opt:
    """One option of a command: the config field it sets, its Typer type and default
    (`...`: required)."""

    name: str
    annotation: Any
    default: Any = ...

    def parameter(self) -> inspect.Parameter:
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY,
                                 annotation=self.annotation,
                                 default=inspect.Parameter.empty if self.default is ...
                                 else self.default)


def group(*opts: Opt, **defaults) -> tuple[Opt, ...]:
    """`opts` with some defaults changed: `group(*TRAIN, lr=None)`."""
    unknown = set(defaults) - {o.name for o in opts}
    if unknown:
        raise TypeError(f"no option {sorted(unknown)} in the group")
    return tuple(dataclasses.replace(o, default=defaults[o.name]) if o.name in defaults else o
                 for o in opts)


def options(*groups: tuple[Opt, ...]):
    """Gives a function `f(ctx, **opts)` the signature Typer reads: `ctx` and every option
    of `groups`, keyword-only."""
    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY,
                                annotation=typer.Context)]
    seen: set[str] = set()
    for o in (o for g in groups for o in g):
        if o.name in seen:
            raise TypeError(f"option {o.name!r} given twice")
        seen.add(o.name)
        params.append(o.parameter())

    def wrap(fn):
        fn.__signature__ = inspect.Signature(params)
        fn.__annotations__ = {p.name: p.annotation for p in params}
        return fn

    return wrap


IMAGE = (Opt("image", ImageOpt), Opt("size", SizeOpt, None), Opt("data_dir", DataDirOpt, None),
         Opt("color", ColorOpt, False))
SPLITTING = (Opt("beta", RestBetaOpt, None), Opt("lam", RestLamOpt, None),
             Opt("alpha", AlphaOpt), Opt("noise_seed", NoiseSeedOpt))
# The shared observation fields' options (a task names those it reads: `Task.reads`)
SHARED = {"sigma": SigmaOpt, "blur_sigma": BlurSigmaOpt, "noise": NoiseOpt,
          "missing": MissingOpt, "mask": MaskOpt}
METHOD = (Opt("method", MethodOpt, "mgdl"),)
MODEL = (Opt("grades", GradesOpt, "4"), Opt("layers_per_grade", LayersOpt, 2),
         Opt("width", WidthOpt, 128), Opt("init", InitOpt, "glorot"))
TRAIN = (Opt("optimizer", OptimOpt, "adam"), Opt("lr", LrOpt, "1e-3"),
         Opt("epochs", EpochsOpt, 2000), Opt("record_every", RecordOpt, 10),
         Opt("tol", TolOpt, None), Opt("seed", SeedOpt, 0),
         Opt("checkpoint_every", CheckpointOpt, 1000), Opt("max_grades", MaxGradesOpt, 8),
         Opt("min_gain", MinGainOpt, None), Opt("lower_lr", LowerLrOpt, False),
         Opt("eig_stop", EigStopOpt, False), Opt("sharpness_every", SharpnessEveryOpt, None),
         Opt("schedule", ScheduleOpt, "constant"), Opt("coarse", CoarseOpt, None),
         Opt("batch", BatchOpt, None), Opt("batch_tile", BatchTileOpt, None),
         Opt("grade_epochs", GradeEpochsOpt, None),
         Opt("grade_tries", GradeTriesOpt, None), Opt("try_rule", TryRuleOpt, "loss"),
         Opt("curriculum", CurriculumOpt, None),
         Opt("curriculum_epochs", CurriculumEpochsOpt, None))
ARCHS = (Opt("archs", ArchsOpt, None), Opt("fourier_sigma", FourierSigmaOpt, 10.0),
         Opt("omega0", Omega0Opt, 30.0))
BASELINES = (Opt("baselines", BaselinesOpt, None), Opt("fourier_sigmas", FourierSigmasOpt, None),
             Opt("baseline_lr", BaselineLrOpt, None))
SELECT = (Opt("select", SelectOpt, "none"), Opt("noise_level", NoiseLevelOpt, None),
          Opt("holdout", HoldoutOpt, 0.1), Opt("sure_probes", SureProbesOpt, 1),
          Opt("sure_eps", SureEpsOpt, 1.0))
OUTPUT = (Opt("out", OutOpt, None), Opt("overwrite", OverwriteOpt, False),
          Opt("quiet", QuietOpt, False))


def observation(task: str) -> tuple[Opt, ...]:
    """`task`'s observation options: the shared fields it reads (`Task.reads`), its own
    (`Task.options`, one option per field, help from the field's metadata) and, for a
    restoration, the splitting weights. Defaults are a config file's for that task
    (`ProblemConfig(task=task)`), so the two agree; β and λ stay unset (each method then
    takes the authors' values)."""
    from multigrade.experiments import ProblemConfig, tasks

    t, config = tasks.get(task), ProblemConfig(task=task)
    opts = [Opt(name, SHARED[name], getattr(config, name)) for name in t.reads]
    if t.options is not None:
        hints = typing.get_type_hints(t.options)
        opts += [Opt(f.name, Annotated[hints[f.name], typer.Option(
            "--" + f.name.replace("_", "-"), help=f.metadata.get("help", ""))],
            getattr(config.options, f.name)) for f in dataclasses.fields(t.options)]
    if t.restoration:
        config_split = {o.name: getattr(config, o.name) for o in SPLITTING}
        opts += [o if o.default is not ... else dataclasses.replace(
            o, default=config_split[o.name]) for o in SPLITTING]
    return tuple(opts)


def own_options(task: str) -> tuple[str, ...]:
    """The names of `task`'s own options (`Task.options`' fields)."""
    from multigrade.experiments import tasks

    cls = tasks.get(task).options
    return () if cls is None else tuple(f.name for f in dataclasses.fields(cls))


def task_options(command: str, task: str, restoration: bool) -> tuple[tuple[Opt, ...], ...]:
    """The option groups of `mgdl <command> <task>` (command: fit or compare)."""
    from multigrade.experiments import ProblemConfig, RunConfig

    model = group(*MODEL, layers_per_grade=RunConfig(
        problem=ProblemConfig(task=task)).model.layers_per_grade)
    train = tuple(Opt("lr", RestLrOpt, None) if o.name == "lr" and restoration else o
                  for o in TRAIN)
    return (IMAGE, observation(task), METHOD if command == "fit" else (), model, train, ARCHS,
            BASELINES if command == "compare" else (), SELECT if restoration else (), OUTPUT)
