{#-
  One row per Stripe customer and calendar month, from the month of the customer's first recurring
  line to the month of the data's as-of time: the customer's MRR measured at the month's end
  (its last second), or at the as-of time for the current month. The as-of time is the latest
  creation time in the Stripe objects (invoices, charges, refunds, subscriptions): Stripe's state is
  known up to there.

  MRR at a time t: per subscription not ended by t (ended_at null or after t), the MRR of the counted
  line whose service period holds t (period_start <= t < period_end; of several, the latest period,
  then the latest invoice); summed over the customer's subscriptions. 0 when no line covers t.
-#}
with lines as (
    select * from {{ ref('int_finance__mrr_lines') }}
),

as_of as (
    select max(t) as as_of_at
    from (
        select max(created_at) as t from {{ ref('stg_stripe__invoices') }}
        union all
        select max(created_at) as t from {{ ref('stg_stripe__charges') }}
        union all
        select max(created_at) as t from {{ ref('stg_stripe__refunds') }}
        union all
        select max(created_at) as t from {{ ref('stg_stripe__subscriptions') }}
    )
),

first_months as (
    select customer_id, toStartOfMonth(min(period_start_at)) as first_month
    from lines
    group by customer_id
),

customer_months as (
    select
        first_months.customer_id as customer_id,
        addMonths(first_months.first_month, toInt32(n)) as month_start,
        least(
            toDateTime(addMonths(first_months.first_month, toInt32(n) + 1), 'UTC') - 1,
            as_of.as_of_at
        ) as measured_at
    from first_months
    cross join as_of
    array join range(
        toUInt32(greatest(0, dateDiff('month', first_months.first_month, toStartOfMonth(as_of.as_of_at))) + 1)
    ) as n
),

covered as (
    select
        customer_months.customer_id as customer_id,
        customer_months.month_start as month_start,
        lines.subscription_id as subscription_id,
        argMax(lines.mrr_cents, (lines.period_start_at, lines.invoice_created_at, lines.line_id)) as mrr_cents
    from customer_months
    inner join lines on lines.customer_id = customer_months.customer_id
    where lines.period_start_at <= customer_months.measured_at
      and customer_months.measured_at < lines.period_end_at
      and (lines.subscription_ended_at is null or customer_months.measured_at < lines.subscription_ended_at)
    group by customer_id, month_start, subscription_id
),

per_customer as (
    select customer_id, month_start, sum(mrr_cents) as mrr_cents, count() as subscriptions
    from covered
    group by customer_id, month_start
)

select
    customer_months.customer_id as customer_id,
    customer_months.month_start as month_start,
    customer_months.measured_at as measured_at,
    round(coalesce(per_customer.mrr_cents, 0), 4) as mrr_cents,
    coalesce(per_customer.subscriptions, 0) as paying_subscriptions
from customer_months
left join per_customer
    on per_customer.customer_id = customer_months.customer_id
   and per_customer.month_start = customer_months.month_start
