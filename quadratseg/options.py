"""Values users give on a command line or in a configuration, checked before any work starts:
:func:`as_number` reads a number and refuses one out of its option's range, naming the option."""

from __future__ import annotations

from typing import Any

from quadratseg.errors import QuadratsegError


def as_number(
    option: str,
    value: Any,
    *,
    above: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
) -> float:
    """``value`` (a number or its text) as a finite float (an int when ``integer``) that is greater
    than ``above``, at least ``minimum`` and at most ``maximum`` (each bound when given).

    Raises:
        QuadratsegError: anything else (text, NaN, infinity, a bool, a number out of range), naming
            ``option``, the value as given and the range.

    Examples:
        >>> as_number("--quadrat-cm", "50", above=0)
        50.0
        >>> as_number("--conf", 1.5, minimum=0, maximum=1)
        Traceback (most recent call last):
        ...
        quadratseg.errors.QuadratsegError: --conf 1.5 is not a number from 0 to 1
    """
    bounds = []
    if above is not None:
        bounds.append(f"above {above:g}")
    if minimum is not None and maximum is not None:
        bounds.append(f"from {minimum:g} to {maximum:g}")
    elif minimum is not None:
        bounds.append(f"of {minimum:g} or more")
    elif maximum is not None:
        bounds.append(f"of {maximum:g} or less")
    kind = "a whole number" if integer else "a number"
    wanted = f"{kind} {' and '.join(bounds)}".strip()
    try:
        number = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = float("nan")
    fits = (
        number == number
        and abs(number) != float("inf")
        and (above is None or number > above)
        and (minimum is None or number >= minimum)
        and (maximum is None or number <= maximum)
        and (not integer or number.is_integer())
    )
    if not fits:
        raise QuadratsegError(f"{option} {value} is not {wanted}")
    return int(number) if integer else number
