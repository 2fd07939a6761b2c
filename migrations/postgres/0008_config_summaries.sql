-- Per-configuration summaries, kept as trials complete: see the SQLite migration of the same
-- number, which this one mirrors.

-- A trial's swept parameters without `seed`, every value's text as stored (JSONB would
-- rewrite `1e17` as an integer), in their stored order.
CREATE FUNCTION config_of(params TEXT) RETURNS TEXT LANGUAGE SQL IMMUTABLE AS $$
    SELECT COALESCE(json_object_agg(j.key, j.value ORDER BY j.i)::TEXT, '{}')
    FROM json_each(params::JSON) WITH ORDINALITY AS j(key, value, i)
    WHERE j.key <> 'seed'
$$;
CREATE TABLE configs (
    sweep_id      BIGINT NOT NULL REFERENCES sweeps(id),
    config        TEXT   NOT NULL,
    first_ordinal BIGINT NOT NULL,
    members       TEXT   NOT NULL,
    PRIMARY KEY (sweep_id, config)
);
CREATE TABLE config_stats (
    sweep_id BIGINT           NOT NULL,
    config   TEXT             NOT NULL,
    name     TEXT             NOT NULL,
    n        BIGINT           NOT NULL,
    sum      DOUBLE PRECISION NOT NULL,
    m2       DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sweep_id, config, name)
);

INSERT INTO configs (sweep_id, config, first_ordinal, members)
    SELECT sweep_id, config_of(params), MIN(ordinal),
           string_agg(ordinal::TEXT || ':' || id, ',')
    FROM trials WHERE status = 'completed'
    GROUP BY sweep_id, config_of(params);
INSERT INTO config_stats (sweep_id, config, name, n, sum, m2)
    WITH v AS (
        SELECT t.sweep_id, config_of(t.params) AS config, r.name, r.value
        FROM results r JOIN trials t ON t.id = r.trial_id
        WHERE t.status = 'completed' AND r.value IS NOT NULL
    ), m AS (
        SELECT sweep_id, config, name, COUNT(*) AS n, SUM(value) AS sum, AVG(value) AS mean
        FROM v GROUP BY sweep_id, config, name
    )
    SELECT m.sweep_id, m.config, m.name, m.n, m.sum,
           SUM((v.value - m.mean) * (v.value - m.mean))
    FROM m JOIN v ON v.sweep_id = m.sweep_id AND v.config = m.config AND v.name = m.name
    GROUP BY m.sweep_id, m.config, m.name, m.n, m.sum;

CREATE FUNCTION trial_in_config() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO configs AS c (sweep_id, config, first_ordinal, members)
        VALUES (NEW.sweep_id, config_of(NEW.params), NEW.ordinal,
                NEW.ordinal::TEXT || ':' || NEW.id)
        ON CONFLICT (sweep_id, config) DO UPDATE SET
            first_ordinal = LEAST(c.first_ordinal, EXCLUDED.first_ordinal),
            members = c.members || ',' || EXCLUDED.members;
    RETURN NEW;
END
$$;
CREATE TRIGGER trial_in_config AFTER UPDATE OF status ON trials
    FOR EACH ROW WHEN (NEW.status = 'completed' AND OLD.status <> 'completed')
    EXECUTE FUNCTION trial_in_config();

CREATE FUNCTION result_in_config() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO config_stats AS s (sweep_id, config, name, n, sum, m2)
        SELECT sweep_id, config_of(params), NEW.name, 1, NEW.value, 0.0
        FROM trials WHERE id = NEW.trial_id AND status = 'completed'
        ON CONFLICT (sweep_id, config, name) DO UPDATE SET
            n = s.n + 1,
            sum = s.sum + EXCLUDED.sum,
            m2 = s.m2 + (EXCLUDED.sum - s.sum / s.n)
                      * (EXCLUDED.sum - (s.sum + EXCLUDED.sum) / (s.n + 1));
    RETURN NEW;
END
$$;
CREATE TRIGGER result_in_config AFTER INSERT ON results
    FOR EACH ROW WHEN (NEW.value IS NOT NULL) EXECUTE FUNCTION result_in_config();

CREATE FUNCTION result_out_of_config() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    UPDATE config_stats s SET
        n = s.n - 1,
        sum = s.sum - OLD.value,
        m2 = CASE WHEN s.n <= 1 THEN 0.0
                  ELSE s.m2 - (OLD.value - s.sum / s.n)
                            * (OLD.value - (s.sum - OLD.value) / (s.n - 1)) END
    FROM trials t
    WHERE t.id = OLD.trial_id AND t.status = 'completed' AND s.sweep_id = t.sweep_id
      AND s.config = config_of(t.params) AND s.name = OLD.name;
    RETURN OLD;
END
$$;
CREATE TRIGGER result_out_of_config AFTER DELETE ON results
    FOR EACH ROW WHEN (OLD.value IS NOT NULL) EXECUTE FUNCTION result_out_of_config();
