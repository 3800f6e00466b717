-- Issue 5: data-quality guard thresholds beside the existing completeness ones.
INSERT INTO business_rules (rule_key, kind, metric, value, description) VALUES
 ('data_max_age_days', 'threshold', NULL, 3, 'Data suspect when no delivery has been recorded for more than this many days before the reference date.'),
 ('data_volume_low_share', 'threshold', NULL, 0.5, 'Data suspect when the week has fewer lines due than this share of a usual week (median of the previous 8): a partial load.');
