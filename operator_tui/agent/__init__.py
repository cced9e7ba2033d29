"""The agent: claims tickets, asks a diagnoser for a Diagnosis, hands its actions to the engine,
and verifies the fix by re-observing and re-checking the ticket's invariant."""
