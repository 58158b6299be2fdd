"""Live sessions on this node: lessons, parent meetings, dual-teacher lessons.

``domain.live`` holds the rules and ``domain.live_protocol`` their effects; ``actions.live``
stores what must outlive the node; ``runtime`` wires one session to the media router and the
participants' peer connections; ``service`` carries requests in and effects out over Socket.IO.
"""
