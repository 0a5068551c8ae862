"""Probes that run inside the engine container (which has Python but not this package).

:mod:`llmsvc.probe.rank_check` is one self-contained, standard-library-only script; the renderer
ships its source text in the pod spec (see :func:`source`), so no image has to contain it.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def source() -> str:
    """The rank check's source text (read as package data: render/ must not import it; read
    once per process, as every render of an engine pod ships it)."""
    return (files(__name__) / "rank_check.py").read_text(encoding="utf-8")
