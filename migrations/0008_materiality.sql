-- Issue 5: materiality. Optional unit costs (per SKU, or per category as a fallback) and
-- the retailer penalty rule, so causes can be ranked by money at stake.
CREATE TABLE unit_costs (
    kind        TEXT NOT NULL,               -- 'sku' | 'category'
    item        TEXT NOT NULL,               -- the SKU or category name
    unit_cost   DOUBLE PRECISION NOT NULL,   -- cost of goods per unit, in the user's currency
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (kind, item)
);

INSERT INTO business_rules (rule_key, kind, metric, value, description) VALUES
 ('penalty_share_of_cost', 'parameter', NULL, 0.03, 'Money at stake on a non-compliant line: this share of its cost of goods (retailer OTIF programmes fine 3 %).');
