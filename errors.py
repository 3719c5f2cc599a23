"""The typed errors a user can cause.

Every error a user can trigger (bad file, unsupported op, wrong input shape, unknown target,
missing toolchain) is a subclass of `modelc.Error`. The CLI prints `str(err)` as one line and
exits with status 2; the Python API lets the exception through. Messages name the file, node and
op involved and say what to do, so that nobody has to read a traceback.
"""

from __future__ import annotations


class Error(Exception):
    """Base class of every error modelc raises on purpose."""


class ModelLoadError(Error):
    """The model file is missing, unreadable, truncated or not a model."""


class UnsupportedOpError(Error):
    """The model uses an op (or an op version, or an attribute value) modelc cannot compile."""


class UnsupportedTypeError(Error):
    """The model uses an element type modelc cannot compile (float8, string, complex, ...)."""


class ShapeError(Error):
    """Shapes do not fit: a symbolic dim without a value, or an op whose inputs disagree."""


class InputError(Error):
    """A run-time input has the wrong name, shape or dtype."""


class TargetError(Error):
    """Unknown target, or a target option it does not understand."""


class ToolchainError(Error):
    """A compiler or tool the target needs is missing, or it failed on generated code."""


class ParseError(Error):
    """The IR text form could not be parsed."""


class VerifyError(Error):
    """A graph broke an IR invariant (a pass bug, or hand-written IR that is wrong)."""


class PipelineError(Error):
    """A pipeline string names an unknown pass or a bad option."""
