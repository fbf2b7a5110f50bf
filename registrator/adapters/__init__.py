"""Thin adapters to the world: the Docker engine, the Consul agent, the ECS agent, logs,
metrics and systemd. They may import the core, nothing above."""
