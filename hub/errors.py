"""AppError: the one exception code anywhere raises to report a problem (REST, socket acks, connect refusals)."""

from __future__ import annotations

from typing import Any

from channels.errors import Problem, ProblemType


class AppError(Exception):
    def __init__(
        self,
        problem: ProblemType,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or problem.title)
        self.problem = problem
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    @property
    def status(self) -> int:
        return self.problem.status

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        return Problem(self.problem, self.detail, self.extensions or None).to_dict(instance)


def validation_error(errors: list[dict[str, str]], detail: str = "the request is not valid") -> AppError:
    """A 422 problem whose ``errors`` list every failure as ``{field, message, type}``."""
    return AppError(ProblemType.VALIDATION, detail, errors=errors)
