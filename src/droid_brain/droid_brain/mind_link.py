"""Is the mind reachable from the body? (plain Python, no rclpy)

When the droid is split across hosts (``role:=body`` / ``role:=mind``), the body pings
each node of the mind (stt, brain, tool executor) every ``period`` seconds and records
the answers. :class:`MindLink` turns those into one state:

* ``waiting``: some node has never answered (startup, or the mind is not started yet);
* ``up``: every node answered within the last ``lost_after`` seconds;
* ``lost``: it was up, and some node has not answered for ``lost_after`` seconds.

Time is passed in (seconds on the body's clock): answers are timed on arrival, never by
the mind's stamps, so the two hosts' clocks need not agree. Every ping carries its send
time; a late answer to an old ping still counts as the node being alive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WAITING, UP, LOST = 'waiting', 'up', 'lost'


@dataclass
class Change:
    state: str                  # the new state
    previous: str
    missing: list               # nodes not answering (empty when up)
    outage_s: float = 0.0       # when back up: how long the mind was lost / waited for


@dataclass
class _Peer:
    last_sent: float | None = None
    last_answer: float | None = None
    rtt: float | None = None
    rtts: list = field(default_factory=list)


class MindLink:
    def __init__(self, nodes, period: float, lost_after: float, now: float):
        nodes = [n for n in nodes if n]
        if not nodes:
            raise ValueError('mind_nodes must name at least one node of the mind')
        if period <= 0:
            raise ValueError(f'ping period must be > 0 s (got {period})')
        if lost_after <= period:
            raise ValueError(f'lost_after ({lost_after} s) must be longer than the ping '
                             f'period ({period} s)')
        self.nodes = list(dict.fromkeys(nodes))
        self.period = float(period)
        self.lost_after = float(lost_after)
        self.state = WAITING
        self.since = now                 # time the current state began
        self.outages: list = []          # durations [s] of the lost periods that ended
        self._peers = {n: _Peer() for n in self.nodes}

    # -- pings ------------------------------------------------------------------------------
    def due(self, now: float) -> list:
        """Nodes to ping now (one ping per node per period); marks them as sent."""
        out = []
        for name, peer in self._peers.items():
            if peer.last_sent is None or now - peer.last_sent >= self.period - 1e-9:
                peer.last_sent = now
                out.append(name)
        return out

    def answered(self, node: str, sent_at: float, now: float) -> None:
        peer = self._peers.get(node)
        if peer is None:
            return
        if peer.last_answer is None or now > peer.last_answer:
            peer.last_answer = now
        peer.rtt = max(0.0, now - sent_at)
        peer.rtts = (peer.rtts + [peer.rtt])[-50:]

    # -- state -------------------------------------------------------------------------------
    def missing(self, now: float) -> list:
        """Nodes that never answered, or not within ``lost_after``."""
        return [n for n, p in self._peers.items()
                if p.last_answer is None or now - p.last_answer > self.lost_after]

    def silent_for(self, now: float) -> float:
        """How long the longest-silent node has not answered (since startup if never)."""
        worst = 0.0
        for p in self._peers.values():
            ref = p.last_answer if p.last_answer is not None else self.since
            worst = max(worst, now - ref)
        return worst

    def tick(self, now: float) -> Change | None:
        """Call periodically; returns a :class:`Change` when the state changes."""
        missing = self.missing(now)
        previous = self.state
        if previous == UP and missing:
            new = LOST
        elif previous in (WAITING, LOST) and not missing:
            new = UP
        else:
            return None
        outage = now - self.since if new == UP else 0.0
        if previous == LOST:
            self.outages.append(outage)
        self.state, self.since = new, now
        return Change(new, previous, missing, outage)

    @property
    def reachable(self) -> bool:
        return self.state == UP

    def rtt_ms(self) -> dict:
        """Last round trip per node [ms] (None until it answered)."""
        return {n: (None if p.rtt is None else round(p.rtt * 1000.0, 2))
                for n, p in self._peers.items()}

    def describe(self, now: float) -> str:
        """One line for /diagnostics and the log."""
        if self.state == UP:
            return f"mind reachable ({', '.join(self.nodes)})"
        missing = self.missing(now)
        if self.state == WAITING:
            return f"waiting for the mind: {', '.join(missing)} not answering"
        return f"mind unreachable: {', '.join(missing)} not answering"


class FallbackGate:
    """Speak the persona's fallback line at most once per utterance and per ``cooldown``
    seconds while the mind is unreachable (plain Python)."""

    def __init__(self, cooldown: float):
        self.cooldown = float(cooldown)
        self._last: float | None = None
        self._seen: list = []

    def should_speak(self, key, now: float) -> bool:
        if key in self._seen:
            return False
        self._seen = (self._seen + [key])[-64:]
        if self._last is not None and now - self._last < self.cooldown:
            return False
        self._last = now
        return True
