"""Placeholder, replaced below."""
class Pool: pass
