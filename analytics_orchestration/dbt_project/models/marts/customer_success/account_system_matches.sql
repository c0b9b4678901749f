{#-
  One row per pair of systems: how many organisations each holds and how many are in both (matched
  on the product organisation id, see int_cs__organization_systems). Rebuilt whole on every run.
-#}
{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(system_a, system_b)',
    )
}}

with systems as (
    select * from {{ ref('int_cs__organization_systems') }}
),

flags as (
    select
        arrayJoin([
            ('product', 'stripe', in_product, in_stripe),
            ('product', 'salesforce', in_product, in_salesforce),
            ('product', 'zendesk', in_product, in_zendesk),
            ('stripe', 'salesforce', in_stripe, in_salesforce),
            ('stripe', 'zendesk', in_stripe, in_zendesk),
            ('salesforce', 'zendesk', in_salesforce, in_zendesk)
        ]) as pair
    from systems
)

select
    pair.1 as system_a,
    pair.2 as system_b,
    concat(system_a, '-', system_b) as pair_key,
    countIf(pair.3) as accounts_in_a,
    countIf(pair.4) as accounts_in_b,
    countIf(pair.3 and pair.4) as matched_accounts,
    countIf(pair.3 and not pair.4) as only_in_a,
    countIf(pair.4 and not pair.3) as only_in_b,
    if(accounts_in_a = 0, null, matched_accounts / accounts_in_a) as share_of_a_matched
from flags
group by system_a, system_b
