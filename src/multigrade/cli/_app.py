"""The `mgdl` application: its Typer apps, consoles and the user-error guard."""

from __future__ import annotations

import functools
import sys
from typing import Annotated

import typer
from rich.console import Console

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


def _guard(fn):
    """Turns a user error into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError) as e:  # FileNotFoundError and ImageNotFoundError too
            err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: finished runs are in their run directories")
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def _main(x64: Annotated[bool, typer.Option("--x64", help="Compute in float64.")] = False):
    if x64:
        import jax

        jax.config.update("jax_enable_x64", True)


