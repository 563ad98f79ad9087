"""Verification of zoo artifacts: parity against PyTorch on many backends, and latency."""
