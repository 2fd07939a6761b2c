-- Which executor made a running attempt's `job_id` (`slurm`, ...), so a run that takes the
-- trial back asks that executor, and no other, to stop the job. Job ids stored before this
-- were SLURM's, the only executor that made them.
ALTER TABLE trials ADD COLUMN executor TEXT;
ALTER TABLE attempts ADD COLUMN executor TEXT;
UPDATE trials SET executor = 'slurm' WHERE job_id IS NOT NULL;
UPDATE attempts SET executor = 'slurm' WHERE job_id IS NOT NULL;
