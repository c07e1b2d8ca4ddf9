"""What runs on the compute node: batch runner and results writer. Imports no Airflow."""
