"""Backend.AI kernel runner: the process inside every compute container."""
