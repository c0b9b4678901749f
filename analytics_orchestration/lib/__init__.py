"""Code the feature folders share: settings, cadences and freshness, asset keys, identifiers, the dbt
project, the connection YAML model, partitions, ClickHouse and S3 helpers, and the one module of
private Dagster APIs (:mod:`.compat`). Nothing here builds ``Definitions`` or imports ``defs``."""
