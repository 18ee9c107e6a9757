"""The `mgdl` command. Thin: it parses options, calls the library and prints tables.

Errors a user can cause end with one line on stderr and exit code 2.
"""

from multigrade.cli import reproduce, studies, tasks  # noqa: F401  (registers the commands)
from multigrade.cli._app import app


def main() -> None:
    """The `mgdl` command (the console script's entry point)."""
    app(prog_name="mgdl")


__all__ = ["app", "main"]
