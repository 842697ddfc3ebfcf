"""The HTTP layer: one blueprint a module."""
