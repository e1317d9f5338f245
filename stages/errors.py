"""Errors a stage raises for bad input: the message says what is wrong and what to do."""


class InputError(ValueError):
    """Bad user input or data (a missing file, an empty corpus, ...). Not a bug."""


class TrainingDiverged(RuntimeError):
    """Training produced non-finite numbers; the message says which setting to lower."""
