"""The host layer: SSH sessions, Docker Engine calls, CRIU and byte streams. Knows nothing of Kubernetes."""
