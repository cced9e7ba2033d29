"""The evaluation harness: campaigns, chaos orchestration, scoring, reports."""
