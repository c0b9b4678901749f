"""ClickHouse column types reduced to families, to tell a harmless change of a source's column (width,
nullability: Int32 -> Int64, DateTime64(3) -> DateTime64(6)) from one of kind (String -> Int64)."""

import re

# Type families: a column may change width or nullability between files (Int32 -> Int64,
# DateTime64(3) -> DateTime64(6)) but not family.
_FAMILIES = (
    ("string", re.compile(r"^(String|FixedString|Enum)")),
    ("integer", re.compile(r"^U?Int\d+$")),
    ("number", re.compile(r"^(Float\d+|Decimal)")),
    ("boolean", re.compile(r"^Bool$")),
    ("date", re.compile(r"^Date(32)?$")),
    ("timestamp", re.compile(r"^DateTime")),
)


def type_family(clickhouse_type: str) -> str:
    """``clickhouse_type`` without Nullable/LowCardinality, reduced to a family name (``integer``,
    ``timestamp``...), or the bare type itself for composite types (Tuple, Array, Map)."""
    bare = clickhouse_type.strip()
    while True:
        match = re.fullmatch(r"(?:Nullable|LowCardinality)\((.*)\)", bare, flags=re.S)
        if match is None:
            break
        bare = match.group(1).strip()
    for family, pattern in _FAMILIES:
        if pattern.match(bare):
            return family
    return re.sub(r"\s*([(),])\s*", r"\1", re.sub(r"\s+", " ", bare))
