-- Per-configuration summaries, kept as trials complete, so that reports over 10^6 trials read
-- one row per configuration and metric rather than every trial. A configuration is the
-- completed trials of a sweep whose swept parameters are equal but for `seed` (reports'
-- default --replicate); reports merge these rows for other replicate sets that include `seed`
-- and read the trials themselves for anything else.
CREATE TABLE configs (
    sweep_id      INTEGER NOT NULL REFERENCES sweeps(id),
    config        TEXT    NOT NULL, -- the swept parameters without `seed`, as JSON
    first_ordinal INTEGER NOT NULL, -- of its first completed trial, in expansion order
    members       TEXT    NOT NULL, -- its completed trials, "ordinal:id" joined by ","
    PRIMARY KEY (sweep_id, config)
);
-- Each metric's finite values over a configuration's trials: count, sum, and the sum of
-- squared deviations from their mean (updated as Welford does, so the spread stays exact).
CREATE TABLE config_stats (
    sweep_id INTEGER NOT NULL,
    config   TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    n        INTEGER NOT NULL,
    sum      REAL    NOT NULL,
    m2       REAL    NOT NULL,
    PRIMARY KEY (sweep_id, config, name)
);

INSERT INTO configs (sweep_id, config, first_ordinal, members)
    SELECT sweep_id, json_remove(params, '$.seed'), MIN(ordinal),
           group_concat(ordinal || ':' || id, ',')
    FROM trials WHERE status = 'completed'
    GROUP BY sweep_id, json_remove(params, '$.seed');
WITH v AS (
    SELECT t.sweep_id, json_remove(t.params, '$.seed') AS config, r.name, r.value
    FROM results r JOIN trials t ON t.id = r.trial_id
    WHERE t.status = 'completed' AND r.value IS NOT NULL
), m AS (
    SELECT sweep_id, config, name, COUNT(*) AS n, SUM(value) AS sum, AVG(value) AS mean
    FROM v GROUP BY sweep_id, config, name
)
INSERT INTO config_stats (sweep_id, config, name, n, sum, m2)
    SELECT m.sweep_id, m.config, m.name, m.n, m.sum,
           SUM((v.value - m.mean) * (v.value - m.mean))
    FROM m JOIN v ON v.sweep_id = m.sweep_id AND v.config = m.config AND v.name = m.name
    GROUP BY m.sweep_id, m.config, m.name;

-- A trial joins its configuration when it completes (trials never leave `completed`).
CREATE TRIGGER trial_in_config AFTER UPDATE OF status ON trials
WHEN NEW.status = 'completed' AND OLD.status <> 'completed'
BEGIN
    INSERT INTO configs (sweep_id, config, first_ordinal, members)
        VALUES (NEW.sweep_id, json_remove(NEW.params, '$.seed'), NEW.ordinal,
                NEW.ordinal || ':' || NEW.id)
        ON CONFLICT (sweep_id, config) DO UPDATE SET
            first_ordinal = MIN(first_ordinal, excluded.first_ordinal),
            members = members || ',' || excluded.members;
END;

-- Results are stored with the trial's completion, in its transaction; a completed trial's
-- results replaced are taken out first.
CREATE TRIGGER result_in_config AFTER INSERT ON results WHEN NEW.value IS NOT NULL
BEGIN
    INSERT INTO config_stats (sweep_id, config, name, n, sum, m2)
        SELECT sweep_id, json_remove(params, '$.seed'), NEW.name, 1, NEW.value, 0.0
        FROM trials WHERE id = NEW.trial_id AND status = 'completed'
        ON CONFLICT (sweep_id, config, name) DO UPDATE SET
            n = n + 1,
            sum = sum + excluded.sum,
            m2 = m2 + (excluded.sum - sum / n) * (excluded.sum - (sum + excluded.sum) / (n + 1));
END;
CREATE TRIGGER result_out_of_config AFTER DELETE ON results WHEN OLD.value IS NOT NULL
BEGIN
    UPDATE config_stats SET
        n = n - 1,
        sum = sum - OLD.value,
        m2 = CASE WHEN n <= 1 THEN 0.0
                  ELSE m2 - (OLD.value - sum / n) * (OLD.value - (sum - OLD.value) / (n - 1)) END
    WHERE (sweep_id, config, name) IN (
        SELECT sweep_id, json_remove(params, '$.seed'), OLD.name
        FROM trials WHERE id = OLD.trial_id AND status = 'completed');
END;
