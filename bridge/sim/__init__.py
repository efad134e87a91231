"""Simulated SkyBell cloud, KVS signaling service and doorbell, used by tests and by default."""
