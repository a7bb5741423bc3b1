"""Errors meant for people: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user (unknown name, bad value, missing file)."""


class CheckpointError(UserError):
    """A cached checkpoint is corrupted or does not match its config."""


class TrainingFailed(Exception):
    """Training diverged (NaN/inf loss); the run is reported as failed."""
