"""Backend.AI krunner for musl-based (Alpine) images: the Python environment of sessions."""
