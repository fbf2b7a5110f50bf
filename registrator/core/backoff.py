"""The one backoff policy: jittered exponential delays, reset after a success.

Reconnecting to Docker, comparing with an agent that is down and requeueing a container whose
placement is not known yet all wait this way; writes to the agent use tenacity's
``wait_random_exponential``, the same shape (``consul_agent.WritePolicy``).
"""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``low`` up to ``high``, each drawn from its upper half."""

    __slots__ = ("current", "high", "low")

    def __init__(self, low: float = 0.2, high: float = 5.0) -> None:
        self.low = low
        self.high = high
        self.current = 0.0

    def next(self) -> float:
        self.current = min(self.high, max(self.low, self.current * 2))
        return random.uniform(self.current / 2, self.current)

    def reset(self) -> None:
        self.current = 0.0
