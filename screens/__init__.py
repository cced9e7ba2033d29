"""Console screens (Textual), one module per screen."""
