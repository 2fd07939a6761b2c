-- Where a running attempt runs when an executor other than local processes started it: the
-- SLURM job id and the node it landed on, so `sweep status` can show them and a run that
-- takes the trial back can cancel the job.
ALTER TABLE trials ADD COLUMN job_id TEXT;
ALTER TABLE trials ADD COLUMN node TEXT;
ALTER TABLE attempts ADD COLUMN job_id TEXT;
ALTER TABLE attempts ADD COLUMN node TEXT;
