"""The rate limiter node service (contract written out below once the API settles)."""
