"""Numbers that arrive as text: only plain ASCII digits, and not too many of them.

`str.isdigit` alone is not enough for input: it also says yes to `²` (which `int` then
refuses with a ValueError) and to the digits of other scripts (`١٢٣`, which `int` reads as
123). Every number ferry reads from a header, a message or a query goes through here."""

from __future__ import annotations


def ascii_int(text: str, max_digits: int) -> int | None:
    """The value of `text` if it is 1 to `max_digits` ASCII digits, else None."""
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None
