{#-
  One row per Stripe customer and month in which the customer had MRR, or lost it (the churn row):
  the month's MRR (see int_finance__customer_month_mrr for the rule), the previous month's, and the
  movement between them. Months with MRR 0 both now and before are left out.
-#}
{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(month_start, customer_id)',
    )
}}

with months as (
    select
        customer_id,
        month_start,
        measured_at,
        mrr_cents,
        paying_subscriptions,
        lagInFrame(mrr_cents, 1, 0.) over (
            partition by customer_id order by month_start
            rows between unbounded preceding and current row
        ) as previous_mrr_cents,
        sum(mrr_cents > 0) over (
            partition by customer_id order by month_start
            rows between unbounded preceding and current row
        ) - (mrr_cents > 0) as earlier_paying_months
    from {{ ref('int_finance__customer_month_mrr') }}
)

select
    concat(months.customer_id, '|', toString(months.month_start)) as customer_month_key,
    months.month_start as month_start,
    months.customer_id as customer_id,
    nullIf(customers.organization_id, '') as organization_id,
    months.measured_at as measured_at,
    months.mrr_cents as mrr_cents,
    months.previous_mrr_cents as previous_mrr_cents,
    round(months.mrr_cents - months.previous_mrr_cents, 4) as mrr_change_cents,
    multiIf(
        months.previous_mrr_cents = 0 and earlier_paying_months > 0, 'reactivated',
        months.previous_mrr_cents = 0, 'new',
        months.mrr_cents = 0, 'churned',
        months.mrr_cents > months.previous_mrr_cents, 'expansion',
        months.mrr_cents < months.previous_mrr_cents, 'contraction',
        'unchanged'
    ) as movement_type,
    months.mrr_cents > 0 as is_paying,
    months.paying_subscriptions as paying_subscriptions
from months
inner join {{ ref('stg_stripe__customers') }} as customers on customers.customer_id = months.customer_id
where months.mrr_cents > 0 or months.previous_mrr_cents > 0
