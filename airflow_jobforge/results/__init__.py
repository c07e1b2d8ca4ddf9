"""What users do after a run: show it, its stats and efficiency, an HTML report, cancel what
is still queued, resubmit what did not finish. Reads the run dir (`rundir/`) and talks to
SLURM (`slurm/`); nothing below imports it."""
