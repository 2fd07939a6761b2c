-- Which swept parameters and which metrics each sweep has, kept as trials are registered and
-- results recorded, so reports and the dashboard list a sweep's names without reading its
-- trials (over 10^6 trials that read took seconds). `param_names` and `result_names` stay:
-- they name the columns of `trials_wide`, across sweeps.
CREATE TABLE sweep_param_names (
    sweep_id INTEGER NOT NULL REFERENCES sweeps(id),
    name     TEXT    NOT NULL,
    PRIMARY KEY (sweep_id, name)
);
CREATE TABLE sweep_result_names (
    sweep_id INTEGER NOT NULL REFERENCES sweeps(id),
    name     TEXT    NOT NULL,
    PRIMARY KEY (sweep_id, name)
);

INSERT OR IGNORE INTO sweep_param_names (sweep_id, name)
    SELECT DISTINCT t.sweep_id, j.key FROM trials t, json_each(t.params) j;
INSERT OR IGNORE INTO sweep_result_names (sweep_id, name)
    SELECT DISTINCT t.sweep_id, r.name FROM results r JOIN trials t ON t.id = r.trial_id;

DROP TRIGGER results_name_known;
CREATE TRIGGER results_name_known AFTER INSERT ON results
BEGIN
    INSERT OR IGNORE INTO result_names (name) VALUES (NEW.name);
    INSERT OR IGNORE INTO sweep_result_names (sweep_id, name)
        SELECT sweep_id, NEW.name FROM trials WHERE id = NEW.trial_id;
END;
