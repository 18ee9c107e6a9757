"""A `RunConfig` as TOML and back: `load_config` reads and validates a `config.toml`
(every key and type checked, every error naming the file and the key), `save_config`
writes one, `from_dict` builds a config from a nested dict and `apply_overrides` applies
`--set SECTION.KEY=VALUE` on top of one. The format, every field with its default:

```toml
command = "fit"            # fit (one model) or compare (MGDL and SGDL side by side)
x64 = false

[problem]
task = "regression"        # regression, denoise, deblur, inpaint, superres or synthetic
image = "camera"           # built-in name or file; size = 128 resizes to 128 × 128
sigma = 10.0               # noise σ_n in units of 1/255 (unset: the task's, inpaint 5)
blur_sigma = 3.0           # deblur: σ_b in pixels; noise = 3.0 (1/255 units)
beta = 0.1                 # TV splitting β, λ, α (the paper's Section 4)
lam = 0.01
alpha = 0.99
noise_seed = 0
setting = 1                # synthetic: setting 1 or 2
missing = 0.5              # inpaint: the fraction of pixels missing (or mask = "FILE")

[problem.options]          # the task's own fields (`tasks.Task.options`), e.g. superres:
factor = 2                 # the downsampling factor
kernel = "box"             # box or gaussian

[model]
method = "mgdl"            # mgdl, sgdl (grades × layers_per_grade hidden layers in one
                           # grade), ffn (random Fourier features) or siren
grades = 4                 # with train.min_gain: the most grades tried
layers_per_grade = 2
width = 128
init = "glorot"
shared_grade_key = false   # true: every grade from one key, as the paper's code does
archs = ["fourier", "relu", "relu", "relu"]  # per grade: relu, fourier or siren
fourier_sigma = 10.0       # Fourier grades: B ~ N(0, σ²), m features, B's seed
fourier_features = 256
fourier_seed = 0
omega0 = 30.0              # SIREN grades' ω₀
baselines = ["ffn", "siren"]  # compare: baselines sized to MGDL's parameter count
fourier_sigmas = [1.0, 3.0, 10.0, 30.0]  # the FFN baseline's σ grid (best on validation)
baseline_layers = 4        # hidden layers of each baseline

[train]
optimizer = "adam"         # gd or one of SUPPORTED_OPTIMIZERS
lr = 0.001
epochs = 2000              # per grade; SGDL trains the same number
grade_epochs = [2000, 2000]  # MGDL: the first grades' own epochs (the rest train `epochs`)
grade_tries = [1, 3]       # MGDL: the first grades trained this many times from fresh
                           # starts, the try of least training loss kept (the rest once)
try_rule = "loss"          # or "erank": keep the try whose features have the highest
                           # effective rank (what the next grade learns from)
record_every = 10
tol = 1e-5                 # optional: the paper's stopping rule
seed = 0
checkpoint_every = 1000
select = "none"            # restoration: sure, discrepancy or holdout choose epochs and
                           # grades without the clean image (multigrade.selection)
noise_level = 10.0         # σ_n those rules use (1/255 units); left out: estimated
holdout = 0.1              # holdout: the fraction of pixels hidden from the loss
sure_probes = 1            # sure: random probes of the divergence
sure_eps = 1.0             # sure: finite-difference step, in units of σ_n (0: exact JVP)
baseline_lr = 1e-4         # the baselines' rate (left out: FFN 1e-3, SIREN 1e-4, their papers')
lr_auto = 0.5              # gd: η = c·2/λ_max of each grade's Hessian at its start
sharpness_every = 100      # gd: epochs between λ_max estimates (for lower_lr, eig_stop)
lower_lr = false           # gd: lower η to c·2/λ_max when λ_max passes 2/η
eig_stop = -0.95           # gd: end a grade when 1 − η·λ_max falls below this
min_gain = 0.1             # adaptive grades: least validation PSNR gain (dB) of a grade
schedule = "constant"      # the rate along each grade: constant, cosine, warmup-cosine
coarse = [4, 2]            # denoise, deblur: grades 1, 2 on 4×, 2× coarser grids (the rest
                           # on the image's): coarse-to-fine
batch = 0.125              # the grades on the image's own grid step on random mini-batches
                           # of this fraction of the pixels (an epoch is then one step)
batch_tile = 16            # those batches as 16 × 16 tiles (a blur's: always tiles)
curriculum = [4, 2]        # denoise, deblur, SGDL: one network on 4×, then 2× coarser grids
                           # before the image's own, one state throughout
curriculum_epochs = [3000, 1000]  # those stages' epochs (before `epochs`; left out: `epochs`)

[methods.mgdl]             # per method (mgdl, sgdl): lr, beta, lam in place of the shared
lr = 5e-3                  # values, and where they come from (the paper's figures come from
beta = 1.0                 # settings chosen per method, SPEC §3)
lam = 1e-2
epochs = 6000              # a recipe of its own (the fast scale): epochs, schedule, batch,
schedule = "warmup-cosine" # batch_tile, MGDL's coarse, grade_epochs and grade_tries,
                           # SGDL's curriculum and curriculum_epochs, in place of train's
source = "the authors' best results (analysis_results.ipynb)"

[study]                    # lr-sweep and spectrum only (the paper's GD studies)
methods = ["mgdl", "sgdl"] # mgdl, sgdl, msdl
learning_rates = [0.05]    # lr-sweep: every rate; spectrum: one, or one per method
interval = 500             # spectrum: GD steps between Hessian spectra
dense_max = 4000           # spectrum: largest Hessian formed densely (above: Lanczos)
density = 0                # spectrum: SLQ probes of the Hessian's density (0: none)
```

A run directory's `config.toml` also has an `[inputs]` table, written by the runner: the
absolute path and SHA-256 of the image file the run read (for a built-in image its name,
the scikit-image version and its pixels' SHA-256). `mgdl resume` and `mgdl grow` read the
image from there and refuse when it is missing or its content changed; a new run (`mgdl run`)
pins its inputs afresh.

The studies train with `train.optimizer = "gd"` at `study.learning_rates`, `train.epochs`
steps per grade; `train.lr` is not used.

Every field has a default; a file need only say what differs. Loading checks every key
and type (an unknown key or a wrong type is one error naming it) and every value's range.
Optional fields (size, data_dir, tol) are simply left out when unset: TOML has no null.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from multigrade.experiments.config import RunConfig
from multigrade.experiments.schema import section


def from_dict(data: Mapping) -> RunConfig:
    """A validated `RunConfig` from a nested dict (as read from TOML)."""
    return section(RunConfig, data, "")


def load_config(path: str | os.PathLike) -> RunConfig:
    """Reads and validates a `config.toml`; every error names the file and the key."""
    from multigrade import runs

    path = Path(path)
    if path.is_dir():
        path = path / runs.CONFIG
    if not path.is_file():
        raise ValueError(f"no config file at {path}")
    try:
        data = runs.read_toml(path)
        if not data:
            raise ValueError("the file is empty: a config names at least its command (e.g. "
                             "command = \"fit\"); `mgdl fit ... --out DIR` writes a full one")
        return from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def save_config(path: str | os.PathLike, cfg: RunConfig) -> None:
    """Writes `cfg` as a TOML config that `load_config` (and `mgdl run`) read back."""
    from multigrade import runs

    runs.write_toml(path, cfg.to_dict())


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """`["train.lr=0.1", "problem.image=moon"]` on top of `cfg` (values in TOML syntax;
    a bare word is a string)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    data = cfg.to_dict()
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes SECTION.KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        *path, last = key.strip().split(".")
        node = data
        for part in path:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"unknown key {key.strip()!r} in --set")
            node = node[part]
        node[last] = value
    return from_dict(data)
