"""What runs on the compute node: the batch runner, its jobs' ready queue and the resource
monitor. Imports no Airflow; the batch file it reads is `rundir.batches`."""
