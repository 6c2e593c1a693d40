"""The web UI (/ui): playground and experiments dashboard. See routes.py."""
