"""Parse the short durations operators type: 90s, 15m, 12h, 7d, 2w."""
import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
DURATION_HELP = "a whole number followed by s, m, h, d or w, e.g. 7d"


def parse_duration(text: str) -> timedelta:
    """A positive duration like 7d; ValueError with one line naming the bad value and the format."""
    match = _DURATION_RE.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration: use {DURATION_HELP}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
