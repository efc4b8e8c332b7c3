"""One hierarchy of errors, so a task or a user can catch what diffana raises."""

__all__ = [
    "DiffanaError",
    "ConfigError",
    "InputDataError",
    "EmptySelectionError",
    "FitError",
    "ResourceError",
    "BatchJobError",
]


class DiffanaError(Exception):
    """Base of every error raised on purpose by diffana."""


class ConfigError(DiffanaError):
    """An analysis configuration is invalid; the message names the file and the key."""


class InputDataError(DiffanaError):
    """Input data is unreadable or inconsistent; the message names the file and branch."""


class EmptySelectionError(InputDataError):
    """No event passed a selection."""


class FitError(DiffanaError):
    """A statistical fit did not converge or the model is ill-defined."""


class ResourceError(DiffanaError):
    """An impossible resource request (GPU share, memory, CPUs)."""


class BatchJobError(DiffanaError):
    """A batch job failed after its retries; the message names its branches and log files."""
