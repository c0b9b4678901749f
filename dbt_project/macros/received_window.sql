{#-
  The inclusive range of Segment received days (UTC) that a daily run covers, as a SQL condition on
  `column`. Dagster sets SEGMENT_MIN_RECEIVED_DATE / SEGMENT_MAX_RECEIVED_DATE to the run's partition
  range; a plain `dbt build` covers every day. Environment variables, not --vars: a changed env_var()
  value re-parses only the files that read it, where changed --vars re-parse the whole project.
  The env_var() calls stay in each model's own file so dbt's partial parsing tracks them there.
-#}
{% macro received_window(column, min_date, max_date) -%}
    {{ column }} between toDate('{{ min_date }}') and toDate('{{ max_date }}')
{%- endmacro %}
