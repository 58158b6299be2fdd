"""Transports: Socket.IO and REST. Thin: they decode, call an action, encode the answer."""
