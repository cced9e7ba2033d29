"""Docker for the project's labs, chaos and the agent's shell: the engine to talk to, the images
built here, containers by label, and faults done through the engine.

Shared by the subjects (their `--docker` labs) and the core (the `docker` shell sandbox); it imports
neither. The Docker SDK (`docker`) is imported lazily: `operator-tui --help` never pays for it.
"""
