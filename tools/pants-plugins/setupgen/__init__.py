"""The setupgen Pants plugin and the metadata rules the release tool shares (see register.py)."""
