"""Capped exponential backoff with full jitter (AWS architecture blog's "full jitter").

Every retry loop in ssmd uses this: the delay ceiling doubles per failure up to ``max_s`` and the
actual delay is uniform in ``[0, ceiling]``, so a fleet of connectors does not reconnect in lock-step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

DEFAULT_INITIAL_S = 0.5
DEFAULT_MAX_S = 30.0


@dataclass
class Backoff:
    initial_s: float = DEFAULT_INITIAL_S
    max_s: float = DEFAULT_MAX_S
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def ceiling(self) -> float:
        return float(min(self.max_s, self.initial_s * (2 ** min(self.attempts, 30))))

    def next_delay(self) -> float:
        delay = self.rng.uniform(0, self.ceiling())
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
