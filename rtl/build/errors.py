"""The build's errors: each carries one message for the user and the exit code of ``build.py``."""

from __future__ import annotations

__all__ = ["FitError", "FlowError"]


class FlowError(Exception):
    """A build failure with a message for the user (no traceback); ``exit_code`` for the CLI."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class FitError(FlowError):
    """The design needs more of a resource than the part has."""
