"""Offline report of one flight record: series extraction, PNG plots and a self-contained HTML page."""
