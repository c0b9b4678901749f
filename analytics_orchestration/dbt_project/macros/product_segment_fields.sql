{#-
  Column expressions over stg_segment__events for int_product__calls, and the product models' read
  of int_product__calls.

  product_organization_id(): the organisation a call belongs to, '' when it names none. A Segment
  group call names it as groupId (the group it joins; only group calls carry one). The app sends it as
  context.groupId on every in-app call (page, track, identify), as properties.organization_id on
  Signed Up, onboarding, invites and Plan Upgraded, and as traits.organization_id on identify.
  The first non-empty of groupId, context.groupId, properties and traits wins.

  product_json_int(column, key): an integer property that old analytics.js versions send as a string
  ("5") and newer ones as a number (5); NULL when absent or not a number.
-#}
{% macro product_organization_id() -%}
    coalesce(
        nullIf(group_id, ''),
        nullIf(JSONExtractString(context, 'groupId'), ''),
        nullIf(JSONExtractString(properties, 'organization_id'), ''),
        nullIf(JSONExtractString(traits, 'organization_id'), ''),
        ''
    )
{%- endmacro %}

{% macro product_json_int(column, key) -%}
    toInt64OrNull(trim(BOTH '"' FROM JSONExtractRaw({{ column }}, '{{ key }}')))
{%- endmacro %}


{#-
  product_touched_calls(): the deduplicated calls of int_product__calls (one row per messageId, JSON
  fields extracted) of the event days that the calls received in the run's window touch (macro
  touched_event_days).
-#}
{% macro product_touched_calls() -%}
    select *
    from {{ ref('int_product__calls') }}
    where event_date in ({{ touched_event_days() }})
{%- endmacro %}
