"""Weekly ClickHouse maintenance: OPTIMIZE ... FINAL on ReplacingMergeTree tables, the parts check."""
