"""Draining a host: an Evacuation moves every running container of a host, one Migration each."""
