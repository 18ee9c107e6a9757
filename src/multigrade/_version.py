"""The package version (its own module, so that the run store can record it without
importing the package root)."""

__version__ = "0.1.0"
