-- Issue 5: how sensitive "unusual" is, per metric. `anomaly_z` applies to every metric;
-- a row keyed `anomaly_z.<metric>` overrides it for one. Volumes are judged both ways (a
-- surge strains the DC as much as a drop loses sales); rates only on bad moves.
INSERT INTO business_rules (rule_key, kind, metric, value, description) VALUES
 ('anomaly_z', 'parameter', NULL, 3.5, 'A value is unusual when its robust z-score against the same weekday (days) or the previous 8 weeks (weeks) reaches this.'),
 ('anomaly_two_sided', 'parameter', NULL, 0, '1 = flag unusual moves in both directions; 0 = only bad moves.'),
 ('anomaly_two_sided.lines_due', 'parameter', 'lines_due', 1, 'Volume: unusual surges and drops are both flagged.');
