-- Which swept parameters and which metrics each sweep has, kept as trials are registered and
-- results recorded, so reports and the dashboard list a sweep's names without reading its
-- trials (over 10^6 trials that read took seconds). `param_names` and `result_names` stay:
-- they name the columns of `trials_wide`, across sweeps.
CREATE TABLE sweep_param_names (
    sweep_id BIGINT NOT NULL REFERENCES sweeps(id),
    name     TEXT   NOT NULL,
    PRIMARY KEY (sweep_id, name)
);
CREATE TABLE sweep_result_names (
    sweep_id BIGINT NOT NULL REFERENCES sweeps(id),
    name     TEXT   NOT NULL,
    PRIMARY KEY (sweep_id, name)
);

INSERT INTO sweep_param_names (sweep_id, name)
    SELECT DISTINCT t.sweep_id, j.key FROM trials t, json_each(t.params::JSON) j
    ON CONFLICT DO NOTHING;
INSERT INTO sweep_result_names (sweep_id, name)
    SELECT DISTINCT t.sweep_id, r.name FROM results r JOIN trials t ON t.id = r.trial_id
    ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION note_result_name() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO result_names (name) VALUES (NEW.name) ON CONFLICT DO NOTHING;
    INSERT INTO sweep_result_names (sweep_id, name)
        SELECT sweep_id, NEW.name FROM trials WHERE id = NEW.trial_id
        ON CONFLICT DO NOTHING;
    RETURN NEW;
END
$$;
