"""Exchange simulators: independent implementations of each exchange's side of the wire protocol."""
