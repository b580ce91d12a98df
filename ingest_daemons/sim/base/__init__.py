"""Venue-neutral plumbing the exchange simulators share (listener, waiters, framing, pacing).

Each simulator implements its exchange's protocol on its own; only what every one of them needs to
exist as a local server lives here, so a fix to binding, waiting or writing lands in all at once.
"""
