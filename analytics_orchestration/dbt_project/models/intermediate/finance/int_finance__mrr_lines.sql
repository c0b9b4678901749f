{#-
  One row per recurring subscription invoice line that counts towards MRR: lines of invoices that
  are paid, open (issued and being collected: a past-due subscriber still counts, as in Stripe's own
  MRR) or draft (the next period's invoice, finalised within the hour); void and uncollectible
  invoices do not count. A line's MRR is its amount less its discounts, spread evenly over the whole
  months of its service period (1 for monthly plans, 12 for annual ones). $0 lines (trials) and
  negative lines (credits) carry no MRR.
-#}
with lines as (
    select
        invoices.invoice_id,
        invoices.customer_id,
        invoices.status as invoice_status,
        invoices.created_at as invoice_created_at,
        coalesce(nullIf(JSONExtractString(line, 'subscription'), ''), invoices.subscription_id) as subscription_id,
        JSONExtractString(line, 'id') as line_id,
        JSONExtractInt(line, 'amount') as amount_cents,
        arraySum(arrayMap(d -> JSONExtractInt(d, 'amount'), JSONExtractArrayRaw(line, 'discount_amounts')))
            as discount_cents,
        toDateTime(JSONExtractInt(line, 'period', 'start'), 'UTC') as period_start_at,
        toDateTime(JSONExtractInt(line, 'period', 'end'), 'UTC') as period_end_at
    from {{ ref('stg_stripe__invoices') }} as invoices
    array join JSONExtractArrayRaw(ifNull(invoices.lines_json, '{}'), 'data') as line
    where invoices.status in ('paid', 'open', 'draft')
)

select
    lines.invoice_id as invoice_id,
    lines.line_id as line_id,
    customers.customer_id as customer_id,
    lines.subscription_id as subscription_id,
    lines.invoice_status as invoice_status,
    lines.invoice_created_at as invoice_created_at,
    lines.amount_cents as amount_cents,
    lines.discount_cents as discount_cents,
    lines.period_start_at as period_start_at,
    lines.period_end_at as period_end_at,
    toUInt32(greatest(1, dateDiff('month', lines.period_start_at, lines.period_end_at))) as period_months,
    (lines.amount_cents - lines.discount_cents) / period_months as mrr_cents,
    subscriptions.ended_at as subscription_ended_at
from lines
inner join {{ ref('stg_stripe__customers') }} as customers on customers.customer_id = lines.customer_id
left join {{ ref('stg_stripe__subscriptions') }} as subscriptions
    on subscriptions.subscription_id = lines.subscription_id
where lines.subscription_id is not null
  and lines.subscription_id != ''
  and lines.amount_cents - lines.discount_cents > 0
