{#-
  The received days (UTC, inclusive) of the Segment calls a daily run covers: Dagster sets
  SEGMENT_MIN_RECEIVED_DATE / SEGMENT_MAX_RECEIVED_DATE to the run's partition range; a plain
  `dbt build` covers every day.

  segment_received_window(): the window as ('YYYY-MM-DD', 'YYYY-MM-DD'). Environment variables, not
  --vars: changed --vars make dbt re-parse the whole project. And they are read only while dbt
  executes (`execute`), never while it parses: dbt's partial parsing records an env_var() read at
  parse time and re-parses the file whenever its value changes, which is every run (10 files, about
  0.9 s of each run, measured in benchmarks/segment_backfill.py). What a model renders while parsing
  is never run.

  received_window(column): `column` within the window, as a SQL condition.
-#}
{% macro segment_received_window() -%}
    {%- if execute -%}
        {{ return((
            env_var('SEGMENT_MIN_RECEIVED_DATE', '1970-01-01'),
            env_var('SEGMENT_MAX_RECEIVED_DATE', '2999-12-31'),
        )) }}
    {%- endif -%}
    {{ return(('1970-01-01', '2999-12-31')) }}
{%- endmacro %}

{% macro received_window(column) -%}
    {%- set min_date, max_date = segment_received_window() -%}
    {{ column }} between toDate('{{ min_date }}') and toDate('{{ max_date }}')
{%- endmacro %}
