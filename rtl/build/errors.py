"""The build's errors: each carries one message for the user and the exit code of ``build.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["FitError", "FlowError", "read_record"]


class FlowError(Exception):
    """A build failure with a message for the user (no traceback); ``exit_code`` for the CLI."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class FitError(FlowError):
    """The design needs more of a resource than the part has."""


def read_record(path: Path, step: str, shape: type = dict) -> Any:
    """The JSON record ``path`` that step ``step`` wrote, which must be a ``shape``.

    Raises
    ------
    FlowError
        (exit code 2) naming the file and the step to run again when the file is missing, is
        not JSON or is not a ``shape`` (damaged, truncated or edited by hand).
    """
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FlowError(f"{path} is missing; run with --from {step}", exit_code=2) from None
    except (ValueError, UnicodeDecodeError):
        record = None
    if not isinstance(record, shape):
        raise FlowError(f"{path} is damaged (not the JSON {shape.__name__} that step {step!r} "
                        f"writes); run with --from {step}", exit_code=2)
    return record
