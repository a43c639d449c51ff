"""Rendering: terminal tables, report.md, JUnit, report.html and tune.html with their figures,
each from a record (report.json, tune.json, bench.json, a diff); nothing here knows how the
record was made."""
