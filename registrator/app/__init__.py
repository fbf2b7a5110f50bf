"""Wiring: the daemon, the one-shot commands (plan, resync) and the command line."""
