-- The product application's own tables in the embedded product database (schema public), as the
-- app's migrations would create them. Idempotent: run at every stack start. The pipeline reads the
-- columns ingestion_configs/postgres/product_db.yaml declares (tests/devstack/test_product_db.py
-- checks they exist with those types); `plan_limits` is one it does not read.
CREATE TABLE IF NOT EXISTS organizations (
    id text PRIMARY KEY,
    name text NOT NULL,
    domain text,
    timezone text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    deleted_at timestamptz
);
CREATE TABLE IF NOT EXISTS users (
    id text PRIMARY KEY,
    email text NOT NULL,
    full_name text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
    organization_id text NOT NULL REFERENCES organizations (id),
    user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('admin', 'member')),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE TABLE IF NOT EXISTS subscriptions (
    id text PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations (id),
    plan text NOT NULL,
    billing_interval text,
    status text NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'canceled', 'ended')),
    started_at timestamptz NOT NULL,
    trial_ends_at timestamptz,
    ended_at timestamptz,
    canceled_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_organization ON subscriptions (organization_id, started_at);
CREATE TABLE IF NOT EXISTS billing_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations (id),
    subscription_id text REFERENCES subscriptions (id),
    event_type text NOT NULL,
    amount_cents bigint NOT NULL,
    currency text NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS feature_flags (
    organization_id text NOT NULL REFERENCES organizations (id),
    flag text NOT NULL,
    enabled boolean NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (organization_id, flag)
);
CREATE TABLE IF NOT EXISTS plan_limits (
    plan text PRIMARY KEY,
    seats integer NOT NULL
);
