"""'Did you mean ...?' suggestions for misspelled names (difflib)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most similar to name, or None when nothing is close."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """": did you mean 'x'?" for the closest candidate, or "" when nothing is close."""
    match = closest(name, candidates)
    return f": did you mean {match!r}?" if match else ""
