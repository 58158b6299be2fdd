"""Which events of each followed stream this node has delivered: plain code, no I/O.

Events reach a node's connections by two paths: the bus (at once, from the node that committed
them) and the follower (realtime/cluster/follower.py: from the store, for what the bus never
brought because the committing node died between its commit and its publish, or Redis was
down). Each (stream, seq) must be written to this node's connections once, whichever path
brings it first; :meth:`StreamPositions.first_delivery` decides.

Per stream followed by someone on this node it keeps ``upto`` (every seq up to it was delivered
or was already in the store when the clients caught up) and the seqs delivered above it (events
of concurrent writers may arrive out of order; a gap left by a dead node is filled by the
follower within two polls). Memory: one entry per followed stream plus one int per event
delivered above a gap, bounded by :data:`MAX_ABOVE` per stream.

The follower polls the streams' last sequence numbers in the store. :meth:`observe` asks for
the events of a stream only when what the previous poll saw there is still not delivered: the
bus normally brings an event milliseconds after its commit, so the follower never races it and
costs one indexed query per poll when nothing is lost.
"""

from __future__ import annotations

# Seqs remembered above a gap in one stream before the gap is given up on (its events then
# reach clients only by their own catch-up); a gap is normally filled within two polls.
MAX_ABOVE = 4096


class Position:
    """One followed stream on this node."""

    __slots__ = ("above", "behind", "followers", "unknown_polls", "upto")

    def __init__(self) -> None:
        self.followers = 0
        # Every seq <= upto is delivered (or predates the clients' catch-up); None: not known
        # yet (the stream was just followed, the first poll or catch-up sets it).
        self.upto: int | None = None
        self.above: set[int] = set()
        # The store's last seq when the previous poll saw this stream behind; None: it was not.
        self.behind: int | None = None
        # Polls that found ``upto`` not known yet (see StreamPositions.observe).
        self.unknown_polls = 0

    def settle(self) -> None:
        """Move ``upto`` over the seqs delivered contiguously above it."""
        if self.upto is None:
            return
        above = self.above
        if above:
            above.difference_update([s for s in above if s <= self.upto])
            while self.upto + 1 in above:
                self.upto += 1
                above.discard(self.upto)
            if len(above) > MAX_ABOVE:
                # A gap nobody fills (the store was unreachable for long): give up on it.
                self.upto = max(above)
                above.clear()


class StreamPositions:
    """Every stream followed on this node, and what was delivered of each."""

    def __init__(self) -> None:
        self._streams: dict[str, Position] = {}
        # The streams the last poll saw behind (their ``behind`` is set).
        self._behind: set[str] = set()
        # Counters for /metrics: events the follower delivered (the bus never brought them),
        # and duplicates dropped (the bus and the follower both brought them).
        self.recovered = 0
        self.duplicates = 0

    def follow(self, stream: str) -> None:
        pos = self._streams.get(stream)
        if pos is None:
            pos = self._streams[stream] = Position()
        pos.followers += 1

    def unfollow(self, stream: str) -> None:
        pos = self._streams.get(stream)
        if pos is None:
            return
        pos.followers -= 1
        if pos.followers <= 0:
            del self._streams[stream]
            self._behind.discard(stream)

    def streams(self) -> list[str]:
        return list(self._streams)

    def upto(self, stream: str) -> int | None:
        pos = self._streams.get(stream)
        return None if pos is None else pos.upto

    def caught_up(self, stream: str, last_seq: int) -> None:
        """A client read this stream from the store up to ``last_seq`` (its catch-up): what
        was committed by then it has; a stream new to this node starts there."""
        pos = self._streams.get(stream)
        if pos is not None and pos.upto is None:
            pos.upto = last_seq
            pos.settle()

    def first_delivery(self, stream: str, seq: int, *, recovered: bool = False) -> bool:
        """True when this event was not delivered on this node yet (and now counts as
        delivered); False for a second copy, to be dropped."""
        pos = self._streams.get(stream)
        if pos is None:
            return True  # nobody here follows it: there is no one to write it to twice
        upto = pos.upto
        if upto is not None and seq <= upto:
            self.duplicates += 1
            return False
        if upto is not None and seq == upto + 1 and not pos.above:
            pos.upto = seq  # the usual case: the next one, nothing out of order
        elif seq in pos.above:
            self.duplicates += 1
            return False
        else:
            pos.above.add(seq)
            pos.settle()
        if recovered:
            self.recovered += 1
        return True

    def known(self) -> dict[str, int]:
        """What to ask the store about: every followed stream and the seq delivered up to
        (-1 when not known yet, so the store's answer includes it)."""
        return {k: -1 if p.upto is None else p.upto for k, p in self._streams.items()}

    def observe(self, ahead: dict[str, int]) -> dict[str, int]:
        """One poll's answer from the store: ``{stream: last seq}`` of the streams past what
        :meth:`known` said (the others are not behind). Returns the streams whose events to
        read now, each with the seq to read after: those behind on the previous poll too, and
        still short of what it saw."""
        for stream in [s for s in self._behind if s not in ahead]:
            self._behind.discard(stream)
            pos = self._streams.get(stream)
            if pos is not None:
                pos.behind = None
        fetch: dict[str, int] = {}
        for stream, last in ahead.items():
            pos = self._streams.get(stream)
            if pos is None:
                continue
            if pos.upto is None:
                # Normally the first follower's catch-up says where the stream starts
                # (caught_up) before the next poll; a poll between its room entry and its
                # read must not start the stream past what that read will return. So only a
                # stream still unknown on a second poll (followed without a catch-up) starts
                # at the store's last seq.
                pos.unknown_polls += 1
                if pos.unknown_polls < 2:
                    continue
                pos.upto = last
                pos.settle()
                pos.behind = None
                self._behind.discard(stream)
                continue
            if last <= pos.upto:
                pos.behind = None
                self._behind.discard(stream)
                continue
            if pos.behind is not None and pos.upto < pos.behind:
                fetch[stream] = pos.upto
            pos.behind = last
            self._behind.add(stream)
        return fetch
