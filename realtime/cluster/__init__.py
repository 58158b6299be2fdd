"""Several nodes: the node registry (who is alive, and with what load), the lost-node sweep,
and the supervisor that runs worker processes (``homeroom serve --workers N``)."""
