-- The names `trials_wide` has a column for: one per parameter (swept or `[fixed]`) and one per
-- metric ever reported. SQL cannot pivot on names it does not know, so the store keeps them
-- here and rewrites the view when one is new (crates/store/src/wide.rs); `views` holds the
-- definition the view was last written with, so a rewrite happens only when it would differ.
CREATE TABLE param_names (name TEXT PRIMARY KEY);
CREATE TABLE result_names (name TEXT PRIMARY KEY);
CREATE TABLE views (name TEXT PRIMARY KEY, definition TEXT NOT NULL);

INSERT OR IGNORE INTO param_names (name)
    SELECT DISTINCT j.key FROM trials t, json_each(t.params) j;
INSERT OR IGNORE INTO param_names (name)
    SELECT DISTINCT j.key FROM sweeps s, json_each(s.config, '$.fixed') j;
INSERT OR IGNORE INTO result_names (name) SELECT DISTINCT name FROM results;

-- Every metric name, as it is first stored: a lookup in a small table per result row.
CREATE TRIGGER results_name_known AFTER INSERT ON results
BEGIN
    INSERT OR IGNORE INTO result_names (name) VALUES (NEW.name);
END;
