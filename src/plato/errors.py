"""Errors a user can cause. The CLI prints their message, without a traceback, and exits 1."""


class PlatoError(Exception):
    """Base class: the message says what was wrong and what to do."""


class DatasetError(PlatoError):
    """A dataset is missing, corrupt, or unknown."""


class ModelError(PlatoError):
    """An unknown model name, a bad option, or a bad cut point."""


class CheckpointError(PlatoError):
    """A checkpoint is missing, truncated, altered, or does not match its metadata."""


class TrainingError(PlatoError):
    """Training diverged (non-finite loss) or was configured wrongly."""


class SpecError(PlatoError):
    """A sweep spec field is missing or invalid, or the spec cannot be read."""


class SettingError(PlatoError):
    """A setting of a config object (StitchConfig, SimilarityConfig) is invalid; `setting`
    names it, so a spec can name its field."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting
