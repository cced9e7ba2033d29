"""A Prometheus scrape configuration for a TiKV cluster, the way TiUP writes one: PD at its client
address, every TiKV at its status address, `honor_labels` on. Used by tests, benchmarks and the
compose files' documentation; `instance` then equals each store's status_address, which is how
PrometheusSource matches series to stores."""

from __future__ import annotations


def scrape_config(pd_address: str, status_addresses: list[str], interval_s: float = 1.0) -> str:
    targets = ", ".join(f'"{a}"' for a in status_addresses)
    return (
        "global:\n"
        f"  scrape_interval: {interval_s:g}s\n"
        f"  evaluation_interval: {interval_s:g}s\n"
        "scrape_configs:\n"
        "  - job_name: pd\n"
        "    honor_labels: true\n"
        f'    static_configs: [{{targets: ["{pd_address}"]}}]\n'
        "  - job_name: tikv\n"
        "    honor_labels: true\n"
        f"    static_configs: [{{targets: [{targets}]}}]\n"
    )
