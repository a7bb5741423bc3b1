"""Errors meant for people: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user (unknown name, bad value, missing file)."""


class CheckpointError(UserError):
    """A cached checkpoint is corrupted or does not match its config."""


class TrainingFailed(Exception):
    """Training diverged (NaN/inf loss); the run is reported as failed."""


def one_line(error: BaseException, limit: int = 300, first_sentence: bool = False) -> str:
    """An exception as one short line (whitespace folded, cut at ``limit``, or at its first sentence), named by
    its type unless it is one of ours, which are already worded for people."""
    text = " ".join(str(error).split())
    text = (text.split(". ")[0] if first_sentence else text)[:limit]
    if isinstance(error, UserError | TrainingFailed):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
