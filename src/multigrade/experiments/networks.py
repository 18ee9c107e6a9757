"""The coordinate-network baselines of a comparison (`compare --baselines ffn,siren`).

Spectral bias holds coordinate networks back, which is what MGDL is claimed to address;
the standard remedies are random Fourier features (FFN, Tancik et al. 2020) and sine
activations (SIREN, Sitzmann et al. 2020). Each baseline is one end-to-end network of
`baseline_layers` hidden layers whose width is chosen so that its parameter count is
closest to MGDL's (the grades MGDL kept). The FFN's scale σ is chosen from a grid: by the
validation loss where the problem has a validation split (image regression: the odd
pixels), otherwise by the PSNR to the clean image (an oracle, labelled as such, like the
TV baselines' weights). Every run is a run directory of its own inside the comparison's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from multigrade.experiments.config import BASELINE_LR, RunConfig
from multigrade.model import matched_width, mlp_params
from multigrade.nn import count_params
from multigrade.problems import Problem
from multigrade.train import FitResult


def baseline_config(cfg: RunConfig, name: str, target: int, in_dim: int, out_dim: int, *,
                    sigma: float | None = None) -> RunConfig:
    """The `fit` config of baseline `name` ("ffn" or "siren") in comparison `cfg`, sized to
    `target` parameters; an FFN at scale `sigma`."""
    m, t = cfg.model, cfg.train
    features = m.fourier_features
    while True:  # an encoding too wide for the target halves its number of frequencies
        first = 2 * features if name == "ffn" else in_dim
        width = matched_width(target, first=first, layers=m.baseline_layers, out_dim=out_dim)
        size = mlp_params(first, width, m.baseline_layers, out_dim)
        if name != "ffn" or features == 1 or abs(size / target - 1) <= 0.05:
            break
        features //= 2
    lr = t.baseline_lr if t.baseline_lr is not None else \
        BASELINE_LR[name] if t.optimizer == "adam" else t.lr
    model = dataclasses.replace(m, method=name, grades=1, layers_per_grade=m.baseline_layers,
                                width=width, archs=(), baselines=(), fourier_features=features,
                                fourier_sigma=m.fourier_sigma if sigma is None else sigma)
    return dataclasses.replace(cfg, command="fit", model=model,
                               train=dataclasses.replace(t, lr=lr, min_gain=None))


def _score(result: FitResult) -> tuple[float, str]:
    """(lower is better, how): the validation loss, else minus the PSNR to the clean image."""
    m = result.metrics
    if "val_loss" in m:
        v, how = m["val_loss"], "held-out pixels" if "residual" in m else "validation loss"
    else:
        v, how = -m.get("test_psnr", -math.inf), "oracle (PSNR to the clean image)"
    return (v if math.isfinite(v) and not result.diverged else math.inf), how


def run_baselines(run_dir: Path, cfg: RunConfig, problem: Problem, target: int,
                  train_one: Callable[[Path, RunConfig], FitResult]
                  ) -> tuple[dict[str, FitResult], dict[str, dict]]:
    """Trains every baseline of `cfg` with `train_one(sub_dir, sub_config)`:
    `(results, what each is)`, the FFN's result at its chosen σ."""
    results, info = {}, {}
    for name in cfg.model.baselines:
        sigmas = cfg.model.fourier_sigmas if name == "ffn" else (None,)
        grid = []
        for s in sigmas:
            sub = baseline_config(cfg, name, target, problem.in_dim, problem.out_dim, sigma=s)
            where = run_dir / (name if len(sigmas) == 1 else f"{name}-sigma{s:g}")
            result = train_one(where, sub)
            grid.append((s, result, sub, where.name))
        s, result, sub, where = min(grid, key=lambda g: _score(g[1])[0])
        params = count_params(result.params)
        info[name] = {
            "dir": where, "params": params, "target_params": target,
            "param_ratio": params / target, "width": sub.model.width,
            "layers": sub.model.layers_per_grade, "lr": sub.train.lr,
            **({"omega0": sub.model.omega0} if name == "siren" else {}),
            **({} if s is None else {
                "sigma": s, "chosen_by": _score(result)[1], "features": sub.model.fourier_features,
                "grid": [{"sigma": gs, "dir": gw, "score": _score(gr)[0],
                          **{k: v for k, v in gr.metrics.items() if k.endswith(("psnr", "loss"))}}
                         for gs, gr, _, gw in grid]})}
        results[name] = result
    return results, info


def matched(info: dict) -> bool:
    """Whether a baseline's parameter count is within 5 % of MGDL's."""
    return abs(info["param_ratio"] - 1.0) <= 0.05


__all__ = ["baseline_config", "matched", "run_baselines"]
