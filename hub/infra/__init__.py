"""Infrastructure: Redis protocol, cache, rate limits, metrics, JSON, passwords and tokens, dev secrets."""
