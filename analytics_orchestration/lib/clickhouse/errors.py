"""How a ClickHouse (or S3) error reads inside one of our messages."""

import re


def one_line(err: Exception, limit: int = 500) -> str:
    """``err``'s text on one line (whitespace runs collapsed), at most ``limit`` characters."""
    return re.sub(r"\s+", " ", str(err)).strip()[:limit]
