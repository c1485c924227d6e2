"""Offline datasets: the on-disk store, the scripted-expert generator and importers."""
