"""A coarse-to-fine curriculum for one grade: the same network trained on a problem's
coarser grids first, then on its own grid.

MGDL goes coarse to fine across grades (`fit` with one problem per grade, e.g.
`[p.coarse(4), p.coarse(2), p, p]`): each grade is a new network. A one-grade model (SGDL)
has no later grade to hand the finer grid to, so its curriculum is within the grade: its
parameters and optimiser state (the step count of a schedule included) carry from stage
to stage, and only the grid changes. The inputs are coordinates of one domain on every
grid (`Restoration.coarse` puts a block at the mean of its pixels' coordinates), so the
network's function is the same object throughout; each stage starts the auxiliary state
(u of the TV split) afresh on its grid, as a coarse-to-fine grade does.

The loss is a sum over pixels, so a 4× coarser grid's is about 1/16 of the full grid's, and
so are its gradients: Adam's second-moment estimate, carried to the finer grid, would then
make its first few hundred steps 4× too long (measured: SGDL at 128² fell from 27.2 to 22.0
dB). Each coarse stage's loss is therefore weighed by the ratio of the pixel counts
(`weigh=True`: each block counts as the pixels it stands for), and one optimiser state
carries across stages at the scale of the last. Coarse stages are
cheap (a 4× coarser grid has 1/16 of the pixels), so the network can take many steps on
the low frequencies before the expensive ones on the full grid (Lindell et al. 2022,
BACON; Müller et al. 2022 for multi-resolution training of coordinate networks).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence

from multigrade.problems.minibatch import unbatched


@dataclasses.dataclass(frozen=True)
class Curriculum:
    """One grade's problems in turn: `stages` (problem, epochs) first, then `final` for the
    rest of the grade's budget (its records, metrics and result are `final`'s). With
    `weigh`, each stage's loss is weighed by `final`'s pixels over its own (above).

    `fit` takes it wherever it takes a grade's problem, e.g. SGDL as
    `fit(sgdl, Curriculum(((p.coarse(4), 3000), (p.coarse(2), 1000)), MiniBatch(p, ...)),
    epochs=7000, ...)`: 3 000 epochs on the 4× coarser grid, 1 000 on 2×, then 3 000
    steps on mini-batches of the full grid, one network and one optimiser state throughout.
    """

    stages: tuple[tuple[typing.Any, int], ...]
    final: typing.Any
    weigh: bool = True

    def __post_init__(self):
        stages = tuple((p, e) for p, e in self.stages)
        first = unbatched(self.final)
        for i, (p, e) in enumerate(stages):
            if isinstance(e, bool) or not isinstance(e, int) or e < 1:
                raise ValueError(f"curriculum stage {i + 1}: epochs must be a positive whole "
                                 f"number, got {e!r}")
            q = unbatched(p)
            if type(q) is not type(first) or (q.in_dim, q.out_dim) != (first.in_dim,
                                                                        first.out_dim):
                raise ValueError("a curriculum's stages must be one problem on several "
                                 "grids (same kind, inputs and outputs)")
        if self.weigh:
            stages = tuple((_weighed(p, _pixels(first) / _pixels(unbatched(p))), e)
                           for p, e in stages)
        object.__setattr__(self, "stages", stages)

    @property
    def lead(self) -> int:
        """Epochs of the stages before `final`."""
        return sum(e for _, e in self.stages)

    def spans(self, budget: int) -> list[tuple[typing.Any, int, int]]:
        """`(problem, first epoch, end epoch)` of each stage within a grade of `budget`
        epochs, `final` last with the rest."""
        if budget <= self.lead:
            raise ValueError(f"the curriculum's coarse stages take {self.lead} epochs of the "
                             f"grade's {budget}: the last stage, on the problem's own grid, "
                             "needs at least one")
        out, start = [], 0
        for p, e in (*self.stages, (self.final, budget - self.lead)):
            out.append((p, start, start + e))
            start += e
        return out

    def at(self, epochs: int) -> typing.Any:
        """The problem of the stage that was training after `epochs` epochs of the grade
        (a checkpoint's: its state lives on that stage's grid)."""
        start = 0
        for p, e in self.stages:
            if epochs <= start + e:
                return p
            start += e
        return self.final


def _pixels(problem) -> int:
    return int(problem.inputs["train"].shape[0])


def _weighed(problem, weight: float):
    """`problem` (or a mini-batch's problem) with its loss weighed by `weight`."""
    if weight == 1:
        return problem
    inner = unbatched(problem)
    if not callable(getattr(inner, "weighted", None)):
        raise ValueError(f"a curriculum weighs its coarse stages' losses: "
                         f"{type(inner).__name__} has no `weighted` (Curriculum(weigh=False))")
    if inner is problem:
        return inner.weighted(inner.weight * weight)
    return dataclasses.replace(problem, problem=inner.weighted(inner.weight * weight))


def stage_spans(problem, budget: int) -> list[tuple[typing.Any, int, int]]:
    """A grade's stages: a `Curriculum`'s, or its one problem for the whole budget."""
    if isinstance(problem, Curriculum):
        return problem.spans(budget)
    return [(problem, 0, budget)]


def final_problem(problem):
    """The problem a grade ends on (a `Curriculum`'s `final`, or the problem itself)."""
    return problem.final if isinstance(problem, Curriculum) else problem


def every_problem(problems: Sequence) -> list:
    """Each grade's problems, every stage of a curriculum included."""
    out = []
    for p in problems:
        out.extend([q for q, _ in p.stages] + [p.final] if isinstance(p, Curriculum) else [p])
    return out
