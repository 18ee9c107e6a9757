"""The optimisers and learning-rate schedules a config names: `make_optimizer(name, lr,
schedule, epochs)` returns one Optax transformation per (name, rate, schedule), so runs in
one process with the same optimiser reuse their compiled programs."""

from __future__ import annotations

import functools

import optax

# Optimisers that take a learning rate as their first argument and nothing else required.
# "gd" is plain full-batch gradient descent (optax.sgd).
SUPPORTED_OPTIMIZERS = ("gd", "sgd", "momentum", "nesterov", "adam", "adamw", "adamax",
                        "nadam", "radam", "rmsprop", "adagrad", "adadelta", "adabelief",
                        "amsgrad", "lion", "lamb", "lars", "novograd", "yogi", "sm3",
                        "fromage", "sign_sgd", "adafactor")


SCHEDULES = ("constant", "cosine", "warmup-cosine")
SCHEDULE_FINAL = 0.01  # cosine schedules end at this fraction of the peak rate
SCHEDULE_WARMUP = 0.05  # warmup-cosine: the fraction of a grade's epochs spent warming up


def learning_rate_schedule(schedule: str, lr: float, epochs: int | None):
    """The rate at each epoch of a grade (a grade's optimiser starts at step 0): `lr` for
    "constant"; "cosine" decays from `lr` to `SCHEDULE_FINAL`·lr over `epochs` (Loshchilov
    & Hutter 2017, SGDR); "warmup-cosine" first rises linearly from 0 over
    `SCHEDULE_WARMUP`·epochs, then decays likewise (Goyal et al. 2017)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; supported: {', '.join(SCHEDULES)}")
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=epochs, alpha=SCHEDULE_FINAL)
    warmup = max(1, round(SCHEDULE_WARMUP * epochs))
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps=warmup,
                                              decay_steps=max(epochs, warmup + 1),
                                              end_value=SCHEDULE_FINAL * lr)


@functools.lru_cache(maxsize=64)
def make_optimizer(name: str, lr: float, schedule: str = "constant",
                   epochs: int | None = None) -> optax.GradientTransformation:
    """`"gd"`/`"sgd"` → `optax.sgd(lr)`, `"momentum"` → SGD with momentum 0.9, `"nesterov"`
    → Nesterov momentum 0.9; any other supported name → `optax.<name>(lr)`; with a
    `schedule` over a grade's `epochs` (`learning_rate_schedule`), the rate follows it.

    One object per (name, rate, schedule): runs in one process with the same optimiser
    reuse their compiled training programs (a transformation is stateless, so sharing it
    is safe)."""
    check_optimizer(name)
    if schedule != "constant" and epochs is None:
        raise ValueError(f"the {schedule} schedule needs the grade's epochs")
    lr = learning_rate_schedule(schedule, lr, epochs)
    if name in ("gd", "sgd"):
        return optax.sgd(lr)
    if name == "momentum":
        return optax.sgd(lr, momentum=0.9)
    if name == "nesterov":
        return optax.sgd(lr, momentum=0.9, nesterov=True)
    if name == "sign_sgd":
        return optax.chain(optax.scale_by_sign(), optax.scale_by_learning_rate(lr))
    return getattr(optax, name)(lr)


def check_optimizer(name: str) -> None:
    """A ValueError unless `name` is an optimiser the configs support (`gd`, `sgd` or an
    Optax optimiser of SUPPORTED_OPTIMIZERS)."""
    if name not in SUPPORTED_OPTIMIZERS:
        raise ValueError(f"unknown optimiser {name!r}; supported: "
                         f"{', '.join(SUPPORTED_OPTIMIZERS)}")


@functools.lru_cache(maxsize=64)
def injected_sgd(lr: float) -> optax.GradientTransformation:
    """Plain GD whose rate lives in the optimiser's state (`--lr auto`, `--lower-lr`: the
    step-size rule sets it between chunks)."""
    return optax.inject_hyperparams(optax.sgd)(learning_rate=lr)
