"""Exceptions raised by CNNGen.

Every error a user can cause derives from :class:`CNNGenError`, so callers (the CLI, the
notebooks) can catch one class and show its message without a traceback. Messages name the
received value, what was expected and what to do. :func:`checked_integer` validates the
integer arguments that several modules accept.
"""

import operator


class CNNGenError(Exception):
    """Base class of every error CNNGen raises on purpose."""


class PhraseSyntaxError(CNNGenError):
    """Raised when a phrase does not follow the architecture grammar.

    Attributes:
        phrase: The text that was parsed.
        line: 1-based line of the offending token.
        column: 0-based column of the offending token.
        token: The offending token's text ("<EOF>" at the end of input).
        reason: What is wrong, without the position.
    """

    def __init__(self, phrase: str, line: int, column: int, token: str, reason: str):
        self.phrase = phrase
        self.line = line
        self.column = column
        self.token = token
        self.reason = reason
        super().__init__(self._format())

    def _format(self) -> str:
        lines = self.phrase.splitlines() or [""]
        source = lines[self.line - 1] if 0 < self.line <= len(lines) else ""
        caret = " " * self.column + "^"
        return f"line {self.line}, column {self.column}: {self.reason}\n  {source}\n  {caret}"

    @property
    def one_line(self) -> str:
        """The message without the phrase and caret, for a one-line report."""
        return f"line {self.line}, column {self.column}: {self.reason}"


class SolverError(CNNGenError):
    """Raised when no valid hyper-parameters exist for an architecture, or pinned ones are invalid."""


class DatasetError(CNNGenError):
    """Raised when a data set is unknown, missing, corrupt or has an unexpected shape."""


class ParameterError(CNNGenError):
    """Raised when a run parameter has a wrong name, type or value."""


class TrainingError(CNNGenError):
    """Raised when a training cannot be set up (not when one architecture fails: that is recorded)."""


class StoreError(CNNGenError):
    """Raised when the results store cannot be opened, is locked by another run, or is corrupt."""


class MeasurementError(CNNGenError):
    """Raised when the energy measurement is configured with invalid values."""


def checked_integer(name: str, value, minimum: int) -> int:
    """Return value as an int, or raise a CNNGenError unless it is an integer >= minimum.

    Python and NumPy integers are accepted. Booleans and floats such as 2.0 are rejected,
    because operator.index accepts neither.
    """
    try:
        valid = not isinstance(value, bool) and operator.index(value) >= minimum
    except TypeError:
        valid = False
    if not valid:
        expected = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise CNNGenError(f"invalid {name} {value!r}: expected {expected}")
    return operator.index(value)
