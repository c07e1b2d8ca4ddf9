"""SLURM: the sbatch script, state table, client over local/SSH transports and the client
Protocol every caller talks to. Imports no Airflow."""
