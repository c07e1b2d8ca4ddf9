"""`jobforge run`: the embedded Airflow (home, migration, head-only Execution API, dag.test
driver)."""
