"""The project's error type: every error says what happened and what to do."""

from __future__ import annotations


class CodelearnError(Exception):
    """An expected failure, shown to the user as one line with the fix."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} {self.fix}".strip()


class MissingExtraError(CodelearnError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str = "") -> None:
        fix = (f"Install it with: pip install 'codelearn[{extra}]'" if extra else
               "It is a core dependency, so the install is incomplete: pip install --force-reinstall codelearn")
        super().__init__(f"{module} is not installed.", fix)
        self.extra = extra


class SchemaMismatchError(CodelearnError):
    """Something on disk was written by an incompatible version."""

    def __init__(self, what: str, found: object, expected: object) -> None:
        super().__init__(
            f"The {what} was written with schema {found}, this codelearn needs {expected}.",
            "Run `codelearn index --rebuild`.",
        )
