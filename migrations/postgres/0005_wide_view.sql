-- The names `trials_wide` has a column for: one per parameter (swept or `[fixed]`) and one per
-- metric ever reported. SQL cannot pivot on names it does not know, so the store keeps them
-- here and rewrites the view when one is new (crates/store/src/wide.rs); `views` holds the
-- definition the view was last written with, so a rewrite happens only when it would differ.
CREATE TABLE param_names (name TEXT PRIMARY KEY);
CREATE TABLE result_names (name TEXT PRIMARY KEY);
CREATE TABLE views (name TEXT PRIMARY KEY, definition TEXT NOT NULL);

INSERT INTO param_names (name)
    SELECT DISTINCT j.key FROM trials t, json_each(t.params::JSON) j
    ON CONFLICT DO NOTHING;
INSERT INTO param_names (name)
    SELECT DISTINCT j.key FROM sweeps s, json_each(s.config::JSON -> 'fixed') j
    ON CONFLICT DO NOTHING;
INSERT INTO result_names (name) SELECT DISTINCT name FROM results ON CONFLICT DO NOTHING;

-- Every metric name, as it is first stored: a lookup in a small table per result row, on the
-- server, without a round trip.
CREATE FUNCTION note_result_name() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO result_names (name) VALUES (NEW.name) ON CONFLICT DO NOTHING;
    RETURN NEW;
END
$$;
CREATE TRIGGER results_name_known AFTER INSERT ON results
    FOR EACH ROW EXECUTE FUNCTION note_result_name();
