"""Error classes shared by every QUADRATSEG module.

Every error says what is wrong, where, and how to fix it. They derive from ``ValueError``
so callers that already catch bad-input errors keep working.
"""

from __future__ import annotations


class QuadratsegError(ValueError):
    """Base class of the project's bad-input errors."""


class SettingsError(QuadratsegError):
    """A setting in ``.env`` or the environment has a value that cannot be used."""


class UnknownLabelError(QuadratsegError):
    """Labels that are not in the taxonomy; the message lists close matches."""

    def __init__(self, unknown: dict[str, list[str]], level: str):
        self.unknown = unknown
        self.level = level
        lines = [
            f"  - {name!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
            for name, close in sorted(unknown.items())
        ]
        super().__init__(
            f"{len(unknown)} label(s) are not in the {level!r} taxonomy level:\n"
            + "\n".join(lines)
            + "\nFix the labels in CVAT, or map them with a label mapping "
            "(see docs/taxonomy.md)."
        )


class CvatFormatError(QuadratsegError):
    """A CVAT XML or label configuration file cannot be read."""


class TemplateError(QuadratsegError):
    """A keypoint template has the wrong shape or values."""


class DegenerateQuadrilateralError(QuadratsegError):
    """Four corners that do not form a usable quadrat (collinear, crossing, outside)."""
