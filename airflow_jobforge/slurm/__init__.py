"""SLURM: sbatch rendering, state table, client over local/SSH transports. Imports no Airflow."""
