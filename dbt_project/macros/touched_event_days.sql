{#-
  The UTC event days (column `event_date`) that the Segment calls received between min_date and
  max_date (inclusive) happened on: what a daily run must recompute, late events included. Callers
  pass env_var('SEGMENT_MIN_RECEIVED_DATE', ...) / env_var('SEGMENT_MAX_RECEIVED_DATE', ...) from
  their own file, so dbt's partial parsing re-parses them when the window changes.
-#}
{% macro touched_event_days(min_date, max_date) -%}
    select distinct toDate(timestamp) as event_date
    from {{ source('segment', 'events') }}
    where {{ received_window('received_date', min_date, max_date) }}
{%- endmacro %}
