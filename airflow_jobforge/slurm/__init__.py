"""SLURM: the sbatch script, state table, client over local/SSH transports. Imports no Airflow."""
