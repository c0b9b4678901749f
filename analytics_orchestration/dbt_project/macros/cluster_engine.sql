{#-
  On a self-managed ClickHouse cluster (profile `cluster`, from CLICKHOUSE_CLUSTER) every table a model
  builds is Replicated: dbt-clickhouse adds ON CLUSTER to its DDL but writes a model's `engine` as
  configured (default MergeTree()). This overrides dbt-clickhouse's own `engine_clause` (its
  materializations/table.sql; the root project's macro of the same name takes precedence), which every
  table, incremental and seed materialization calls, so no model's `engine=` config changes.
  Without a cluster (ClickHouse Cloud, the embedded stack) it renders exactly as dbt-clickhouse's.
  No path or replica arguments: the server's default_replica_path ({uuid}) and default_replica_name
  apply, so the __dbt_backup / __dbt_tmp tables dbt creates and exchanges each get a path of their own.
-#}
{% macro engine_clause() %}
  engine = {{ cluster_engine(config.get('engine', default='MergeTree()')) }}
{%- endmacro -%}

{#- `engine` (e.g. ReplacingMergeTree(_version)) as Replicated<engine> when the target has a cluster. -#}
{% macro cluster_engine(engine) -%}
  {%- if target.cluster and 'MergeTree' in engine and not engine.startswith('Replicated') and not engine.startswith('Shared') -%}
    {{- 'Replicated' ~ engine -}}
  {%- else -%}
    {{- engine -}}
  {%- endif -%}
{%- endmacro %}
