"""TiKV through PD's HTTP API, and a PD-compatible simulator (sim/) for tests, demos and the default."""
