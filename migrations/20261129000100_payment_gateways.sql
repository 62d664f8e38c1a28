-- Outbound provider calls (issue #9): what the provider calls a refund, and when we last asked
-- a provider about an open order or refund (reconciliation asks the oldest-checked first).
ALTER TABLE refunds ADD COLUMN provider_ref text;
ALTER TABLE refunds ADD COLUMN checked_at timestamptz;
ALTER TABLE orders ADD COLUMN checked_at timestamptz;
CREATE INDEX refunds_pending ON refunds (created_at) WHERE status = 'pending';
