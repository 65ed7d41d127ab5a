"""The whole exception tree and the process exit codes of SPEC §9.

Errors are chosen by what the user must do next; every message names the place
(file, row, key or stage), what was expected, what was found, and the fix.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER = 2
EXIT_APPROVAL = 3
EXIT_HARD_STOP = 4
EXIT_REGRESSION = 5
EXIT_INTERRUPTED = 130


class DeftError(Exception):
    """An error the user can fix; the CLI prints one line (plus `hint`) and exits `exit_code`."""

    exit_code: int = EXIT_USER

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(DeftError):
    """A spec, run config, override or command-line value is wrong."""


class ContractError(DeftError):
    """Input data (CSV, image, table, result JSON) breaks its documented contract."""


class StateConflict(DeftError):
    """The run directory is locked by another process, or its state forbids the request."""


class ApprovalNeeded(DeftError):
    """The pre-flight was printed but nobody approved it (no TTY and no --yes)."""

    exit_code = EXIT_APPROVAL


class InsufficientDisk(DeftError):
    """The pre-flight's free-disk check failed: free space first (or shrink the run); nothing was written."""


class ReproductionMismatch(DeftError):
    """`deftpipe rerun` got numbers that differ from the original run's; a failed check, like a hard stop."""

    exit_code = EXIT_HARD_STOP


class StageFailed(DeftError):
    """A hard-stop gate fired inside a stage; the run is marked failed."""

    exit_code = EXIT_HARD_STOP

    def __init__(self, stage: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{stage}: {message}", hint=hint)
        self.stage = stage


class RegressionHalt(DeftError):
    """The regression gate halted the loop; resume with --accept-regression to continue."""

    exit_code = EXIT_REGRESSION


class DependencyMissing(DeftError):
    """An optional dependency is not installed."""
