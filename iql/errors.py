"""Errors a user can cause and fix. The entry point prints them as one paragraph, without a traceback."""

ERROR_FILE = "error.txt"  # in the run dir of a run that failed: its error message (for the report and sweep table)


class IQLError(Exception):
    """Base of every error whose message tells the user what to change."""


class ConfigError(IQLError, ValueError):
    """A configuration value is out of range, of the wrong type, or unknown."""


class DatasetError(IQLError):
    """A dataset is missing, malformed, or does not fit the algorithm or the evaluation environment."""


class CheckpointError(IQLError):
    """No usable checkpoint could be read from the run directory."""


class DeviceError(IQLError):
    """The requested torch device is not available on this machine."""


class CompileError(IQLError):
    """``hardware.compile=true`` but ``torch.compile`` could not build the update on this machine."""


class TrainingDivergedError(IQLError):
    """A loss became NaN or infinite."""


class ReportError(IQLError):
    """The paths given to ``python -m iql.report`` hold no readable runs, or the report could not be written."""


class Interrupted(Exception):
    """Training stopped on a signal (Ctrl-C, SIGTERM) after writing a checkpoint; the message says how to resume."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
