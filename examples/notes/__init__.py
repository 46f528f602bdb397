"""A small host app that embeds the auth server: see app.py."""
