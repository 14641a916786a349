"""Enforcement: quotas with action reject, applied at the gateway (Kong Admin API)."""
