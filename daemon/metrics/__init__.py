"""Prometheus metrics of the engine (`--metrics-addr`): what is counted, the loop-lag probe, the listener."""
