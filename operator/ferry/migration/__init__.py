"""The migration layer: the phase machine and each phase's step. Knows nothing of kopf or Kubernetes."""
