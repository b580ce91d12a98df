"""RFC 6455 text-frame headers for writing server frames straight to the transport.

Simulators batch many frames into one ``transport.write`` to reach flood rates (a library
``send`` costs an await and a write per frame); server→client frames are unmasked.
"""

from __future__ import annotations

import struct
from typing import Final

# Headers of payloads shorter than 126 bytes, by length: the hot path indexes this instead of calling.
SMALL_TEXT_HEADERS: Final = tuple(bytes((0x81, n)) for n in range(126))
_HDR_MEDIUM: Final = struct.Struct("!BBH")
_HDR_LARGE: Final = struct.Struct("!BBQ")


def text_frame_header(n: int) -> bytes:
    """Header of an unmasked, final text frame with an ``n``-byte payload (RFC 6455 §5.2)."""
    if n < 126:
        return SMALL_TEXT_HEADERS[n]
    if n < 65536:
        return _HDR_MEDIUM.pack(0x81, 126, n)
    return _HDR_LARGE.pack(0x81, 127, n)
