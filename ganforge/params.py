"""Declarative limits for typed parameters: `lr: Annotated[float, Range(gt=0)]`.

Components annotate their keyword arguments with these, and the config loader checks YAML
values against them, so a bad value fails at load time with its key path.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Inclusive (ge, le) and exclusive (gt, lt) numeric bounds; None means unbounded."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def violation(self, value: float) -> str | None:
        """Why `value` is out of range, or None when it is inside."""
        if self.ge is not None and value < self.ge:
            return f"must be >= {self.ge}"
        if self.gt is not None and value <= self.gt:
            return f"must be > {self.gt}"
        if self.le is not None and value > self.le:
            return f"must be <= {self.le}"
        if self.lt is not None and value >= self.lt:
            return f"must be < {self.lt}"
        return None

    def __str__(self) -> str:
        parts = []
        for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)):
            if bound is not None:
                parts.append(f"{op}{bound:g}")
        return ",".join(parts)
