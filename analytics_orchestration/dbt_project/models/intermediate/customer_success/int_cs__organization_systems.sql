{#-
  One row per product organisation id (org_...) known to any of the five systems, with where it is
  found and its record there. The product database is the master list: an organisation exists when
  stg_product_db__organizations holds it (not closed); the others link to it by the same id:
    product database     -> stg_product_db__organizations.organization_id (organizations.id), with
                            its name, sign-up time and current members (stg_product_db__memberships)
    Segment              -> the call's organisation (see int_cs__org_user_days; any call type here)
    Stripe customer      -> stg_stripe__customers.organization_id (customer.metadata.organization_id)
    Salesforce Account   -> stg_salesforce__accounts.organization_id (Account.Organization_Id__c)
    Zendesk organization -> stg_zendesk_support__organizations.product_organization_id (external_id)
  An id found elsewhere but not in the product database (a closed organisation, a mistyped id) is
  kept with in_product_db = false, so account_system_matches counts it as unmatched.
  When a system holds several records for one organisation, the earliest created is taken.
  A table rebuilt whole on each run: account_health_daily and account_system_matches both read it,
  and the Segment side reads int_product__calls (narrow, deduplicated) once instead of at every read.
-#}
{{ config(materialized='table', engine='MergeTree()', order_by='organization_id') }}

with product_db as (
    select
        organizations.organization_id as organization_id,
        organizations.name as organization_name,
        organizations.created_at as organization_created_at,
        coalesce(members.members, 0) as members
    from {{ ref('stg_product_db__organizations') }} as organizations
    left join (
        select organization_id, count() as members
        from {{ ref('stg_product_db__memberships') }}
        group by organization_id
    ) as members on members.organization_id = organizations.organization_id
),

segment as (
    select organization_id, min(event_date) as first_activity_date, max(event_date) as last_activity_date
    from {{ ref('int_product__calls') }}
    where organization_id != ''
    group by organization_id
),

stripe as (
    select organization_id, argMin(customer_id, (created_at, customer_id)) as stripe_customer_id
    from {{ ref('stg_stripe__customers') }}
    where organization_id != ''
    group by organization_id
),

salesforce as (
    select organization_id, argMin(account_id, (created_at, account_id)) as salesforce_account_id
    from {{ ref('stg_salesforce__accounts') }}
    where organization_id is not null and organization_id != ''
    group by organization_id
),

zendesk as (
    select
        product_organization_id as organization_id,
        argMin(zendesk_organization_id, (created_at, zendesk_organization_id)) as zendesk_organization_id
    from {{ ref('stg_zendesk_support__organizations') }}
    where product_organization_id is not null and product_organization_id != ''
    group by product_organization_id
),

ids as (
    select distinct organization_id
    from (
        select organization_id from product_db
        union all select organization_id from segment
        union all select organization_id from stripe
        union all select assumeNotNull(organization_id) from salesforce
        union all select assumeNotNull(organization_id) from zendesk
    )
)

select
    assumeNotNull(ids.organization_id) as organization_id,
    ids.organization_id in (select organization_id from product_db) as in_product_db,
    ids.organization_id in (select organization_id from segment) as in_segment,
    ids.organization_id in (select organization_id from stripe) as in_stripe,
    ids.organization_id in (select organization_id from salesforce) as in_salesforce,
    ids.organization_id in (select organization_id from zendesk) as in_zendesk,
    if(in_product_db, product_db.organization_name, null) as organization_name,
    if(in_product_db, product_db.organization_created_at, null) as organization_created_at,
    if(in_product_db, product_db.members, null) as members,
    if(in_segment, segment.first_activity_date, null) as first_activity_date,
    if(in_segment, segment.last_activity_date, null) as last_activity_date,
    if(in_stripe, stripe.stripe_customer_id, null) as stripe_customer_id,
    if(in_salesforce, salesforce.salesforce_account_id, null) as salesforce_account_id,
    if(in_zendesk, zendesk.zendesk_organization_id, null) as zendesk_organization_id
from ids
left join product_db on product_db.organization_id = ids.organization_id
left join segment on segment.organization_id = ids.organization_id
left join stripe on stripe.organization_id = ids.organization_id
left join salesforce on salesforce.organization_id = ids.organization_id
left join zendesk on zendesk.organization_id = ids.organization_id
