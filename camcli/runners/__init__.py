"""Runners: they take a job and its images through the same per-batch explain and write steps."""
