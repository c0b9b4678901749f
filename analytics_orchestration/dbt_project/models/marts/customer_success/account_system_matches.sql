{#-
  One row per pair of the five systems (product database, Segment, Stripe, Salesforce, Zendesk): how
  many organisations each holds and how many are in both (matched on the product organisation id, see
  int_cs__organization_systems). The product_db pairs say how much of each system links to a live
  organisation of the product. Rebuilt whole on every run.
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
            ('product_db', 'segment', in_product_db, in_segment),
            ('product_db', 'stripe', in_product_db, in_stripe),
            ('product_db', 'salesforce', in_product_db, in_salesforce),
            ('product_db', 'zendesk', in_product_db, in_zendesk),
            ('segment', 'stripe', in_segment, in_stripe),
            ('segment', 'salesforce', in_segment, in_salesforce),
            ('segment', 'zendesk', in_segment, in_zendesk),
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
