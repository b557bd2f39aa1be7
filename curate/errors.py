"""The small error hierarchy. The CLI prints any CurateError as one line and exits 2.

Per-row failures are data (a status/reason column), never exceptions: only recipe, config,
input-file and backend faults raise these.
"""

from __future__ import annotations


class CurateError(Exception):
    """Base class. ``str(err)`` is the one line the CLI prints."""

    exit_code = 2


class RecipeError(CurateError):
    """The recipe is malformed: unknown key, wrong type, unknown stage, bad value."""


class SourceError(CurateError):
    """An input file or dataset is missing or malformed (names the file and line/field)."""


class BackendError(CurateError):
    """A teacher/probe backend is broken: unreachable endpoint, too many failures, bad model."""


class VersionExistsError(CurateError):
    """The output version already exists; versions are immutable."""


class BusyError(CurateError):
    """Another run holds the recipe's work folder (its lock): refused at once, before any work."""


class MissingExtraError(CurateError):
    """An optional dependency is missing; the message says which pip extra to install."""


class BudgetExceeded(CurateError):
    """A token or dollar budget was reached; finished work is kept and the run can resume."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its class name when the message is empty)."""
    lines = str(e).splitlines()
    return (lines[0] if lines and lines[0].strip() else e.__class__.__name__)[:limit]


def require(module: str, extra: str, what: str | None = None):
    """Import an optional dependency or raise a one-line MissingExtraError with the install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        need = what or module
        raise MissingExtraError(
            f"{need} needs the '{module}' package ({e.__class__.__name__}: {e}); "
            f"run: pip install 'curate[{extra}]'"
        ) from None
