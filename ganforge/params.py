"""Declarative limits for typed parameters: `lr: Annotated[float, Range(gt=0)]`.

Components annotate their keyword arguments with these, and the config loader checks YAML
values against them, so a bad value fails at load time with its key path.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Range:
    """Inclusive (ge, le) and exclusive (gt, lt) numeric bounds; None means unbounded."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    # The bounds' types take part in equality: typing caches Annotated[...] by equality, and would
    # otherwise hand Range(lt=1) to a field declared with Range(lt=1.0), whichever was imported first,
    # so its error message would depend on import order ("must be < 1" or "< 1.0").
    _types: tuple[type, ...] = field(init=False, repr=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_types", tuple(type(b) for b in (self.ge, self.gt, self.le, self.lt)))

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
