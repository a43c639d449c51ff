"""Running: a pipeline into its run directory (pipeline.py), pipeline files and flag overrides
(config.py), the stage cache, manifest checks, and what works on finished runs: bench, diff,
MLflow."""
