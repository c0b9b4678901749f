"""What the code location's ClickHouse statements change on a self-managed cluster (``CLICKHOUSE_CLUSTER``).

One setting, the name of a cluster of ``remote_servers`` (one shard, any number of replicas). Unset or
empty, :class:`ClusterTopology` is a single server: ClickHouse Cloud (``SharedMergeTree`` replicates
a plain ``MergeTree`` definition by itself) and the embedded stack, and every statement is exactly
as it would be without this module. Set, the loaders' statements change so:

- DDL that ClickHouse does not replicate by itself (``CREATE``/``DROP`` of databases, tables and
  views, ``EXCHANGE TABLES``, ``RENAME TABLE``) runs on every replica: :meth:`~ClusterTopology.on_cluster`.
  ``ALTER`` (``ADD COLUMN``, ``REPLACE``/``ATTACH PARTITION``) and ``OPTIMIZE`` of a ``Replicated*``
  table go through the table's replication log without it.
- Tables are ``Replicated*MergeTree`` without path or replica arguments
  (:meth:`~ClusterTopology.engine`): the server's ``default_replica_path``
  (``/clickhouse/tables/{uuid}/{shard}``) and ``default_replica_name`` (``{replica}``) apply. ``{uuid}``
  is the table's own UUID, the same on every replica because the ``CREATE`` is ``ON CLUSTER`` (ClickHouse
  refuses the form otherwise), so a staging table ``CREATE TABLE ... AS`` another gets a path of its own.
- Before a partition swap the staging table is synced on every replica
  (:meth:`~ClusterTopology.sync_replica`): each statement is its own HTTP request, which a load
  balancer may send to another replica than the ``INSERT``'s.
- A big read of S3 can be spread over the replicas with ``s3Cluster``
  (:meth:`~ClusterTopology.s3_function`).
"""

from __future__ import annotations

from dataclasses import dataclass

from analytics_orchestration.lib.clickhouse.s3 import S3Source
from analytics_orchestration.lib.identifiers import validate_identifier

CLUSTER_VARIABLE = "CLICKHOUSE_CLUSTER"


@dataclass(frozen=True)
class ClusterTopology:
    """A single server (``cluster=None``) or the named cluster every DDL statement runs on.

    Raises:
        ValueError: ``cluster`` is not an identifier (``[A-Za-z_][A-Za-z0-9_]*``, at most 63
            characters), so it can be written into SQL unquoted.
    """

    cluster: str | None = None

    def __post_init__(self) -> None:
        if self.cluster is not None:
            validate_identifier(self.cluster)

    @classmethod
    def from_setting(cls, value: str) -> ClusterTopology:
        """The topology of a ``CLICKHOUSE_CLUSTER`` value: blank is a single server."""
        return cls(value.strip() or None)

    def on_cluster(self) -> str:
        """``" ON CLUSTER <name>"`` (leading space) to follow the object of a DDL statement, or ``""``."""
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""

    def engine(self, family: str, *args: str) -> str:
        """A table engine of the MergeTree family: ``family`` (e.g. ``ReplacingMergeTree``) with ``args``
        (``ReplacingMergeTree(v)``, or bare without args), prefixed ``Replicated`` on a cluster.

        Raises:
            ValueError: ``family`` is not a plain ``*MergeTree`` name (already replicated or shared).
        """
        if not family.endswith("MergeTree") or family.startswith(("Replicated", "Shared")):
            raise ValueError(f"{family!r} is not a plain MergeTree-family engine name")
        name = f"Replicated{family}" if self.cluster else family
        return f"{name}({', '.join(args)})" if args else name

    def sync_replica(self, database: str, table: str) -> list[str]:
        """Statements that wait until every replica of ``database.table`` has fetched its parts (``[]``
        on a single server). ``LIGHTWEIGHT``: only fetches, attaches and partition replacements are
        waited for, not merges."""
        if not self.cluster:
            return []
        return [f"SYSTEM SYNC REPLICA{self.on_cluster()} {database}.{table} LIGHTWEIGHT"]

    def s3_function(self, source: S3Source, spread: bool) -> str:
        """The table function reading ``source``: ``s3(...)``, or on a cluster and when ``spread``,
        ``s3Cluster('<name>', ...)`` (the replicas read the matched files in parallel). The arguments
        are the query parameters of :attr:`S3Source.parameters` either way."""
        if self.cluster and spread:
            return f"s3Cluster('{self.cluster}', {S3Source.ARGUMENTS})"
        return source.sql


SINGLE_SERVER = ClusterTopology()
