-- Sensible default KPI definitions, targets, rules and playbooks. Editing comes later;
-- any change bumps settings.rules_version.
INSERT INTO metric_definitions (metric, name, definition, unit, higher_is_better, sort_order) VALUES
 ('otif', 'OTIF', 'Order lines delivered on or before the due date (+ on-time window) and with delivered qty >= ordered qty x (1 - tolerance), over lines due.', 'pct', 1, 1),
 ('on_time', 'On-time', 'Order lines delivered on or before the due date (+ on-time window), over lines due. Undelivered lines count as late.', 'pct', 1, 2),
 ('in_full', 'In-full', 'Order lines with delivered qty >= ordered qty x (1 - tolerance), over lines due.', 'pct', 1, 3),
 ('fill_rate', 'Fill rate', 'Units delivered over units ordered, for lines due in the period.', 'pct', 1, 4),
 ('lines_due', 'Lines due', 'Order lines whose due date falls in the period (volume).', 'count', 1, 5);

INSERT INTO targets (metric, site, target) VALUES
 ('otif', '*', 0.95), ('on_time', '*', 0.97), ('in_full', '*', 0.97), ('fill_rate', '*', 0.98);

INSERT INTO business_rules (rule_key, kind, metric, value, description) VALUES
 ('on_time_window_days', 'parameter', NULL, 0, 'Days after the due date that still count as on time.'),
 ('in_full_tolerance', 'parameter', NULL, 0, 'Share of the ordered quantity that may be missing and still count as in full (0.02 = 2 %).'),
 ('at_risk_band_pp', 'threshold', NULL, 2, 'On target at or above target; at risk within this many points below; off target beyond.'),
 ('otif_drop_trigger_pp', 'trigger', 'otif', 3, 'OTIF down this many points or more week over week needs an insight.'),
 ('fill_rate_drop_trigger_pp', 'trigger', 'fill_rate', 2, 'Fill rate down this many points or more week over week needs an insight.'),
 ('noise_min_pp', 'parameter', NULL, 0.5, 'Changes smaller than this many points, or than two standard errors, are noise.'),
 ('data_past_due_open_share', 'threshold', NULL, 0.05, 'Data suspect when more than this share of lines due has no delivered date.'),
 ('data_unreasoned_failure_share', 'threshold', NULL, 0.5, 'Data suspect when more than this share of failures has no reason code.');

INSERT INTO playbooks (playbook_key, cause, action, owner, priority) VALUES
 ('carrier_late', 'reason:carrier_late', 'Review the carrier scorecard with the account manager; move affected lanes to the backup carrier until on-time recovers.', 'Transport manager', 'high'),
 ('short_pick', 'reason:short_pick', 'Audit pick accuracy on the affected wave; check slotting and replenishment triggers for the short SKUs.', 'Warehouse shift lead', 'high'),
 ('stockout', 'reason:stockout', 'Expedite replenishment for the short SKUs and raise their safety stock; tell customers of expected short shipments.', 'Inventory planner', 'high'),
 ('appointment_missed', 'reason:appointment_missed', 'Book delivery appointments earlier and file callback requests with the customer''s receiving team.', 'Customer service lead', 'medium'),
 ('data_mismatch', 'reason:data_mismatch', 'Validate ASNs against the PO before dispatch and correct item master data.', 'Master data analyst', 'medium'),
 ('carrier_dimension', 'dimension:carrier', 'Compare lane performance for this carrier against the others and raise it in the weekly carrier review.', 'Transport manager', 'medium'),
 ('customer_dimension', 'dimension:customer', 'Review the customer''s order profile and appointment rules with the account team.', 'Account manager', 'medium'),
 ('category_dimension', 'dimension:category', 'Check inventory availability and forecast accuracy for this category.', 'Inventory planner', 'medium'),
 ('site_dimension', 'dimension:site', 'Review this DC''s volume plan and labour capacity with the site manager.', 'Network operations', 'medium'),
 ('data_quality', 'data', 'Chase missing delivery confirmations (POD) and reason codes with the carriers and the site before acting on the KPI.', 'Data steward', 'high'),
 ('mix_shift', 'effect:mix', 'Volume moved towards a weaker segment: rebalance volume or plan capacity for it.', 'Network planner', 'medium');

INSERT INTO settings (key, value) VALUES ('rules_version', '1');
