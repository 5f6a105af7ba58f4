"""Backend.AI krunner for glibc-based images: the Python environment of session containers."""
