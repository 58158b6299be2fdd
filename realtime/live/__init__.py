"""Live sessions on this node: lessons, parent meetings, dual-teacher lessons.

``domain.live`` holds the rules; ``runtime`` wires one session to the media router and the
participants' peer connections; ``actions`` are the Socket.IO requests.
"""
