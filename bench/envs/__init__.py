"""Environment factories."""
