"""The `mgdl` application: its Typer apps, consoles, progress bars and the error guard."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console

from multigrade.train import Callback

app = typer.Typer(
    help="Multi-grade deep learning (MGDL): train grade by grade, compare with SGDL.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
fit_app = typer.Typer(help="Train one model and write a run directory.", no_args_is_help=True)
compare_app = typer.Typer(help="Train MGDL and SGDL of the same total depth side by side.",
                          no_args_is_help=True)
app.add_typer(fit_app, name="fit")
app.add_typer(compare_app, name="compare")

# Tables are wider than the 80 columns Rich assumes when writing to a pipe or a file.
console = Console() if sys.stdout.isatty() else Console(width=130)
err_console = Console(stderr=True)


def _error(message: str) -> None:
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


def _guard(fn):
    """Turns a user error into one line on stderr and exit code 2, and an interruption
    into one line naming what was kept, with exit code 128 + the signal (130, 143)."""
    from multigrade.experiments.runner import RunInterrupted

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RunInterrupted as e:
            _error(str(e))
            raise typer.Exit(e.exit_code) from None
        except (ValueError, OSError) as e:  # FileNotFoundError and ImageNotFoundError too
            _error(f"error: {e}")
            raise typer.Exit(2) from None
        except MemoryError:
            _error("error: out of memory (choose a smaller --size or --width)")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:  # before a run directory was claimed, or between runs
            _error("interrupted: what was on disk before stays as it was (a run directory's "
                   "status.json says what it holds)")
            raise typer.Exit(130) from None

    return wrapper


def _info(row: dict[str, float]) -> str:
    keys = [k for k in ("train_loss", "val_loss", "val_psnr", "test_psnr") if k in row]
    return "  ".join(f"{k} {row[k]:.4g}" for k in keys)


class RichProgress(Callback):
    """A Rich progress bar per grade: epochs done and the latest metrics."""

    def __init__(self, progress, label: str, grades: int):
        self.progress, self.label, self.grades, self.task = progress, label, grades, None

    def on_grade_start(self, grade, epochs, done):
        self.task = self.progress.add_task(f"{self.label} grade {grade}/{self.grades}",
                                           total=epochs, completed=done, info="")

    def on_records(self, grade, rows):
        self.progress.update(self.task, completed=rows[-1]["epoch"], info=_info(rows[-1]))


@contextlib.contextmanager
def progress_bars(quiet: bool) -> Iterator:
    """A progress factory `(label, grades) -> Callback` for the runner, or None."""
    if quiet:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                  console=err_console) as bar:
        yield lambda label, grades: RichProgress(bar, label, grades)


def command_line(ctx) -> str:
    """The command being run, with every option it was given or defaulted to (from its
    context, so it is right however the app was invoked)."""
    import shlex

    parts = ["mgdl", *ctx.command_path.split()[1:]]
    for name, value in ctx.params.items():
        flag = "--" + name.replace("_", "-")
        param = next((p for p in ctx.command.params if p.name == name), None)
        if param is not None and param.param_type_name == "argument":
            parts.append(shlex.quote(str(value)))
        elif value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [f"{flag} {shlex.quote(str(v))}" for v in value]
        elif value is not None and value is not False:
            parts.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


@app.callback()
def _main(x64: Annotated[bool, typer.Option("--x64", help="Compute in float64.")] = False):
    from multigrade.compile_cache import enable_compilation_cache

    enable_compilation_cache()  # $MULTIGRADE_COMPILATION_CACHE=off disables it
    if x64:
        import jax

        jax.config.update("jax_enable_x64", True)
