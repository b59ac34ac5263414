"""The host layer: SSH sessions and byte streams, and over them the Docker Engine, files, CRIU, netfilter
and runc of each host. Knows nothing of Kubernetes or of migrations."""
