"""The no-SLURM backend (`backend.py`, the SLURM client's interface), the direct runner
(`direct.py`, `jobforge run --no-airflow`) and its pipeline runner (`pipeline.py`, stage by
stage through the direct runner)."""
