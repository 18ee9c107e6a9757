"""The step-size rule between chunks (`StepSize`): GD's rate η = c·2/λ_max from the grade
loss Hessian's largest eigenvalue at a grade's start, re-estimated along it to lower η past
the edge of stability or end the grade where 1 − η·λ_max falls below the eigenvalue stop."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax

from multigrade._types import PRNGKeyArray
from multigrade.train._engine import _Engine
from multigrade.train._results import GradeState, Pending
from multigrade.train._rules import StepSize, learning_rate, with_learning_rate


@dataclasses.dataclass(frozen=True)
class RateRule:
    """`step_size` applied to a plain fit (a vmapped sweep sets its rates itself)."""

    step_size: StepSize | None
    engine: _Engine
    loss_fn: Callable
    key: PRNGKeyArray

    def sharpness(self, k: int, problem, state: GradeState, frozen) -> float:
        """λ_max of the current grade's loss Hessian (the step size rule's estimate)."""
        loss = jax.tree_util.Partial(self.loss_fn, problem, frozen.feats["train"],
                                     frozen.base["train"], frozen.scale, state.aux)
        return self.step_size.sharpness(loss, state.params,
                                        jax.random.fold_in(self.key, 7919 + k))

    def start(self, k: int, problem, state: GradeState, frozen, pending: Pending | None,
              rows: list[dict]):
        """`(state, {"lr", "lambda_max"})` at a grade's start: η = c·2/λ_max with a
        `StepSize` of factor c; a continued grade's from its first record."""
        ss = self.step_size
        if ss is None or self.engine.members is not None:
            return state, {}
        if pending is not None:
            first = next((r for r in rows if r["grade"] == k + 1), None)
            lr = float(learning_rate(state.opt_state)) if first is None else first["lr"]
        elif ss.c is not None:
            lam = self.sharpness(k, problem, state, frozen)
            if not (math.isfinite(lam) and lam > 0):
                raise ValueError(f"grade {k + 1}: the loss Hessian's largest eigenvalue is "
                                 f"{lam:.3g}; no step can be chosen from it")
            lr = ss.c * 2.0 / lam
            state = with_learning_rate(state, lr)
        else:
            lr = float(learning_rate(state.opt_state))
        return state, {"lr": lr, "lambda_max": None if ss.c is None else 2.0 * ss.c / lr}

    def watch(self, k: int, problem, state: GradeState, frozen, new_rows: list[dict],
              epochs_done: int, alive: bool) -> tuple[GradeState, bool]:
        """After a chunk: its rows get `lr` (and `sharpness`, where λ_max is estimated); at
        a re-estimate, η is lowered past the edge if asked, and the grade ends (True) where
        1 − η·λ_max is below the eigenvalue stop."""
        ss = self.step_size
        if ss is None or self.engine.members is not None:
            return state, False
        lr = float(learning_rate(state.opt_state))
        for row in new_rows:
            row.update(lr=lr, sharpness=math.nan)
        if not alive or ss.every is None or epochs_done % ss.every:
            return state, False
        lam = self.sharpness(k, problem, state, frozen)
        new_rows[-1]["sharpness"] = lam
        if ss.eig_stop is not None and 1.0 - lr * lam < ss.eig_stop:
            return state, True
        if ss.lower and lam * lr > 2.0:
            state = with_learning_rate(state, ss.c * 2.0 / lam)
        return state, False
