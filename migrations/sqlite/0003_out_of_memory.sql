-- Attempts of a trial that ran out of GPU memory: each one halves the next attempt's
-- micro-batch (SWEEP_MICRO_BATCH_SPLIT), and `sweep status` shows that it happened.
ALTER TABLE trials ADD COLUMN out_of_memory INTEGER NOT NULL DEFAULT 0;
