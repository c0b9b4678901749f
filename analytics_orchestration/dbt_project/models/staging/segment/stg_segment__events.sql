{#-
  One row per Segment call (messageId) across the whole history, whatever order received days are
  loaded or re-run in.

  ReplacingMergeTree ordered by (event_date, message_id): every delivery of a call lands in the
  month partition of its timestamp, and ClickHouse keeps one row per key, the earliest delivery
  (highest _version). Read it with FINAL (the marts do) for exact counts before background merges.
  Monthly partitions by event time: a run over any received days writes one partition per month its
  calls happened in (a two-year backfill: about 25), far below max_partitions_per_insert_block (100).

  optimize_on_insert=0: FINAL collapses duplicates at read time, so an insert need not collapse its
  own block first (which doubled the insert's time).

  Daily-tagged: a run appends the calls received in its window (see macro received_window); a re-run
  appends the same rows again, which the engine collapses.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        engine='ReplacingMergeTree(_version)',
        partition_by='toYYYYMM(event_date)',
        order_by='(event_date, message_id)',
        query_settings={'optimize_on_insert': 0},
        tags=['daily'],
    )
}}

select
    message_id,
    type,
    event,
    user_id,
    anonymous_id,
    coalesce(user_id, nullIf(anonymous_id, '')) as user_key,
    group_id,
    previous_id,
    timestamp as event_at,
    toDate(timestamp) as event_date,
    original_timestamp,
    sent_at,
    received_at,
    received_date,
    properties,
    traits,
    context,
    object_key,
    line_number,
    -- earliest delivery wins: versions count down from 2100-01-01 in milliseconds
    toUInt64(4102444800000 - toUnixTimestamp64Milli(received_at)) as _version
from {{ source('segment', 'events') }}
where {{ received_window('received_date') }}
