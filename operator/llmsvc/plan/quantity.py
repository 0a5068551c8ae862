"""Kubernetes resource quantities as exact numbers, so that ``0.5`` and ``500m`` compare equal.

The API server stores every quantity in canonical form (``cpu: "0.5"`` comes back as ``500m``,
``1024Mi`` as ``1Gi``), so the planner's diff compares quantity fields by value, not by spelling.
The grammar is the one of ``resource.Quantity``: a signed decimal number, then a binary suffix
(``Ki`` .. ``Ei``), a decimal suffix (``n u m k M G T P E``) or an exponent (``e3``, ``E-2``).
"""

from __future__ import annotations

import re
from decimal import Decimal

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?|[eE](?P<exponent>[+-]?[0-9]+))$"
)


def parse_quantity(value: object) -> Decimal | None:
    """The exact value of a quantity (``int`` or string), or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        return None
    number = Decimal(match["number"])  # the pattern admits only plain decimals
    if match["exponent"] is not None:
        return number.scaleb(int(match["exponent"]))
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * Decimal(1024) ** _BINARY[suffix]
    return number.scaleb(_DECIMAL[suffix])


def same_quantity(a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` are quantities of the same value (``0.5`` == ``500m``)."""
    x, y = parse_quantity(a), parse_quantity(b)
    return x is not None and y is not None and x == y
