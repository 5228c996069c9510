-- One PostgreSQL for the team stack: MLflow's store is POSTGRES_DB (mlflow), Prefect's is this.
CREATE DATABASE prefect;
