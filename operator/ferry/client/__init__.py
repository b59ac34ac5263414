"""The command line for people and scripts: `ferry migrate|get|describe|hosts` (and `kubectl ferry ...`)."""
