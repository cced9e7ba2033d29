"""Console tests: Pilot, snapshots, end to end."""
