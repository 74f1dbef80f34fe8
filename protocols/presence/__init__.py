"""The presence topic: each daemon's signed, periodic status, and who is alive.

- :mod:`protocols.presence.codec`: health score, status encode/decode (signed envelope).
- :mod:`protocols.presence.table`: the peer table, pure liveness decisions.
- :mod:`protocols.presence.sampler`: local machine figures for the next status.
"""

TOPIC = "/distro-train/presence/1"
"""Gossipsub topic of presence messages."""
