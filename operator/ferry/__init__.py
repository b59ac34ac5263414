"""ferry: live-migrate workloads between Docker hosts with CRIU, driven by Kubernetes."""
