"""Sensors, each built by a ``make_*_sensor`` factory so tests can inject a clock and a target list."""
