"""Homeroom's real-time layer: the aiohttp app, accounts, classes, chat, notices, Q&A."""
