"""The layer above `fit`: configurations, presets and one call per user-level action.

- `config`: the `RunConfig` schema, validated; `configfile` reads and writes it as TOML,
  with `--set` overrides; `optimizers` makes the optimisers and schedules it names;
- `runner`: `execute`, `resume`, `grow`, `load_result`: each writes a run directory
  through `multigrade.runs` and returns an `Outcome`;
- `studies`: the paper's GD studies (learning-rate sweeps, spectra along training);
- `sweep`: grids of runs on Dask distributed (`load_sweep`, `run_sweep`).

The CLI only turns options into a config, calls one of these and prints a table.
"""

from __future__ import annotations

from multigrade.experiments.config import ModelConfig, ProblemConfig, RunConfig, TrainConfig
from multigrade.experiments.configfile import apply_overrides, from_dict, load_config, save_config
from multigrade.experiments.optimizers import SUPPORTED_OPTIMIZERS, make_optimizer
from multigrade.experiments.runner import (
    Outcome,
    RunInterrupted,
    build_problem,
    execute,
    grow,
    load_checkpoint,
    load_result,
    resume,
    run_config_file,
)


def demo_config() -> RunConfig:
    """The README's main job: MGDL (4 grades × 2 layers) vs SGDL (8 layers), width 128,
    Adam 1e-3, 2000 epochs per grade, on the built-in cameraman resized to 128 × 128.
    About two minutes on 2 CPU cores."""
    return RunConfig(command="compare", problem=ProblemConfig(image="camera", size=128))


def restoration_quick(task: str = "denoise") -> RunConfig:
    """The quick restoration preset (CPU minutes at 128 × 128): MGDL 4 grades × 3 hidden
    layers vs SGDL 12 hidden layers, width 128, Adam 1e-3 (the paper's default rate), 1000
    epochs per grade for both (the paper runs 20 000)."""
    return RunConfig(command="compare", problem=ProblemConfig(task=task, size=128),
                     model=ModelConfig(layers_per_grade=3), train=TrainConfig(epochs=1000))


__all__ = ["SUPPORTED_OPTIMIZERS", "ModelConfig", "Outcome", "ProblemConfig", "RunConfig",
           "RunInterrupted", "TrainConfig", "apply_overrides", "build_problem", "demo_config",
           "execute", "from_dict", "grow", "load_checkpoint", "load_config", "load_result",
           "make_optimizer", "restoration_quick", "resume", "run_config_file", "save_config"]
