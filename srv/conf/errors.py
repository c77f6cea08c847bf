"""Configuration errors that say where: ``path:line:col: message``.

A ``ConfigError`` is one problem at one place.  Loading a file collects every problem it can
find before giving up, so ``load()`` raises ``ConfigErrors`` (one line per problem).
Problems that come from the environment rather than a file use ``path="env SRS_X"`` and
``line=0``; they print as ``env SRS_X: message``.
"""

from __future__ import annotations


class ConfigError(Exception):
    """One configuration problem located at ``path:line:col``."""

    def __init__(self, path: str, line: int, col: int, message: str) -> None:
        self.path = path
        self.line = line
        self.col = col
        self.message = message
        super().__init__(path, line, col, message)

    def __str__(self) -> str:
        return format_location(self.path, self.line, self.col, self.message)

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, int, int, str]]:
        return (type(self), (self.path, self.line, self.col, self.message))


class ConfigErrors(Exception):
    """Every problem found while loading a configuration, in file order."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__(self.errors)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    def __reduce__(self) -> tuple[type[ConfigErrors], tuple[list[ConfigError]]]:
        return (type(self), (self.errors,))


def format_location(path: str, line: int, col: int, message: str) -> str:
    """``path:line:col: message``, or ``path: message`` when there is no line (env)."""
    if line <= 0:
        return f"{path}: {message}"
    return f"{path}:{line}:{col}: {message}"
