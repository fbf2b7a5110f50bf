"""registrator: keeps the local Consul agent in step with the Docker containers on a host."""

__version__ = "0.1.0"
