"""etcd 3.4 as a subject: a real third-party cluster (being built)."""
