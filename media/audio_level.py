"""A publisher's audio level, read from the RTP header extension ssrc-audio-level (RFC 6464).

The SFU never decodes audio, but a browser (and aiortc) puts the level of every audio packet
in its header when the extension is negotiated (aiortc's answer offers it for audio, Chromium
and Firefox send it): ``-dBov`` in 0-127 (127: silence) and a voice-activity bit. The ingest
hook (``media.internals.ingest.install_audio_level``) feeds each packet's value here, on the
event loop; nothing is computed per packet beyond a comparison.

:meth:`AudioLevel.snapshot` gives the host the loudest level of the last
:data:`LEVEL_WINDOW_S` (what a level meter shows) as WebRTC's ``audioLevel`` (0-1, linear,
1 = 0 dBov), its dBov, and whether voice was flagged in that window. A publisher that does not
send the extension has no level (``None``): it would have to be decoded (a decoder per
microphone, which the SFU avoids) or reported by the client from its own ``getStats()``.

Memory: a few numbers per published microphone.
"""

from __future__ import annotations

import math
from typing import Any

# The level shown is the loudest over this window (s); older than two windows: none.
LEVEL_WINDOW_S = 1.0
SILENCE_DBOV = 127


class AudioLevel:
    """The level of one published audio track."""

    def __init__(self) -> None:
        self.packets = 0
        self._window_at = -math.inf
        # Loudest (smallest -dBov) and voice seen in the current and in the previous window.
        self._loudest = SILENCE_DBOV
        self._voice = False
        self._previous: tuple[int, bool] | None = None

    def packet(self, now: float, voice: bool, level: int) -> None:
        """One packet's extension: ``voice`` flag, ``level`` in -dBov (0 loudest, 127 silent)."""
        self.packets += 1
        if now - self._window_at >= LEVEL_WINDOW_S:
            fresh = now - self._window_at < 2 * LEVEL_WINDOW_S
            self._previous = (self._loudest, self._voice) if fresh else None
            self._window_at, self._loudest, self._voice = now, SILENCE_DBOV, False
        if level < self._loudest:
            self._loudest = level
        self._voice = self._voice or voice

    def snapshot(self, now: float) -> dict[str, Any] | None:
        """``{audio_level, dbov, voice}`` of the last full window, None if nothing recent."""
        age = now - self._window_at
        if age >= 2 * LEVEL_WINDOW_S:
            return None  # no packet for a while (muted, DTX sends one now and then)
        loudest, voice = (self._loudest, self._voice)
        if age < LEVEL_WINDOW_S and self._previous is not None:
            # The current window has just begun: take the louder of it and the last one.
            loudest = min(loudest, self._previous[0])
            voice = voice or self._previous[1]
        return {
            "audio_level": round(10 ** (-loudest / 20), 4) if loudest < SILENCE_DBOV else 0.0,
            "dbov": -loudest,
            "voice": voice,
        }
