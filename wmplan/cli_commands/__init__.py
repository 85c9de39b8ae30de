"""Sub-commands of `wmplan`, one module each (see wmplan/cli.py)."""
