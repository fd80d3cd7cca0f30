"""Benchmark harness: engine vs bare python-socketio (see bench/README.md)."""
