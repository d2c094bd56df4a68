"""How stored field values compare: numbers and dates get a numeric twin so filters can use ranges."""
from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def field_number(value: object) -> float | None:
    """The number a field compares as: numbers as themselves, ISO dates/times as days since 1970-01-01 (UTC where
    an offset is given, else as written), anything else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        num = float(text)
        return num if math.isfinite(num) else None
    except ValueError:
        pass
    if _ISO_DATE.match(text):
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is not None:
            dt = dt.astimezone(UTC).replace(tzinfo=None)
        return (dt - datetime(1970, 1, 1)).total_seconds() / 86400.0
    return None
