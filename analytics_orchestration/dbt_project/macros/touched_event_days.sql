{#-
  The UTC event days (column `event_date`) that the Segment calls received in the run's window
  (macro received_window) happened on: what a daily run must recompute, late events included.
-#}
{% macro touched_event_days() -%}
    select distinct toDate(timestamp) as event_date
    from {{ source('segment', 'events') }}
    where {{ received_window('received_date') }}
{%- endmacro %}
