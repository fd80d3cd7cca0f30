"""engine: a Socket.IO server runtime assembled from one declarative TOML profile."""

__version__ = "0.1.0"
