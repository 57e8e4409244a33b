"""The package's version, in a module of its own: the engine records it in every
checkpoint without importing the package root (which reaches the Python API and judging)."""

__version__ = "0.1.0"
