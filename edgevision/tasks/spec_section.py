"""Reading the spec section a task owns (``detection``, ``segmentation``) strictly.

Torch-free, imports nothing of the task layer: each task's ``*Options.from_dict`` is
`read_section` with the section's name and an example.
"""

from __future__ import annotations

from typing import Any, TypeVar

from edgevision.errors import SpecError

T = TypeVar("T")


def read_section(cls: type[T], data: Any, section: str, example: str) -> T:
    """``cls(**data)`` for the ``section`` of a spec: a JSON object of ``cls``'s dataclass
    fields only; a `SpecError` names a non-object, unknown fields or a value of the wrong type
    (``example`` is the fix for a non-object). ``cls``'s own `SpecError` passes through."""
    if not isinstance(data, dict):
        raise SpecError(
            f"ModelSpec {section} must be a JSON object, got {type(data).__name__}",
            f"write e.g. {example}",
        )
    known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpecError(
            f"ModelSpec {section} has unknown field(s): {', '.join(unknown)}",
            f"valid fields are: {', '.join(sorted(known))}",
        )
    try:
        return cls(**data)
    except SpecError:
        raise
    except (TypeError, ValueError) as exc:
        raise SpecError(f"ModelSpec {section} has a value of the wrong type: {exc}") from None


__all__ = ["read_section"]
