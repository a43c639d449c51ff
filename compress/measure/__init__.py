"""Measurement: heads and their metrics, the gates (one list of checks for the report, the exit
code, JUnit and tune), timing and its lock, per-layer sensitivity, weight counting."""
