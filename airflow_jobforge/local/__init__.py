"""The no-SLURM backend (`backend.py`, the SLURM client's interface) and the direct runner
(`direct.py`, `jobforge run --no-airflow`)."""
