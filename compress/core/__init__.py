"""The bottom layer: errors with their exit codes, the run's records (state.py), atomic file
writing, progress, interrupts, text tables, versions, and every private API of a dependency
(compat.py). Imports nothing of compress."""
