"""GPU shares, MPS control and energy/throughput measurement."""
