-- Reports and exports read a sweep's trials in expansion order; this keeps that a scan.
CREATE INDEX trials_order ON trials (sweep_id, ordinal);
