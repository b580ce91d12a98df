"""Exchange adapters: pure protocol code (sign, build commands, classify frames), no sockets."""
