"""The trainer's expected failures: each carries a message a person can act on.

The CLI prints `mnist-trainer: error: <message>` for these and exits non-zero; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class TrainerError(Exception):
    """Base class for failures the CLI reports as one line."""

    exit_code = 1


class DataFileError(TrainerError):
    """An IDX file is unreadable: truncated or corrupt gzip, wrong magic number, wrong shape or count."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DataMissingError(TrainerError):
    """A dataset file is absent and could not be downloaded from any mirror."""


class ExportError(TrainerError):
    """The model base path cannot be written, or model.tflite does not answer as the SavedModel does."""


class TrainingDivergedError(TrainerError):
    """The loss became NaN or infinite."""
