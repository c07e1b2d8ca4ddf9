"""Jobs -> batches (`planner`) and which jobs a run runs (`selection`). Pure: no Airflow, no
SLURM; the dependency-graph algorithms they share with validation live in `config.graph`."""
