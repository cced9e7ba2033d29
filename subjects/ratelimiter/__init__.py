"""A distributed rate limiter service of our own (N nodes sharing Redis), and its adapter."""
