"""Homeroom clients: the Python client (``clients.homeroom``) and the browser app (``web/``)."""
