"""CLI subcommands. Each module defines ``register(subparsers)``; see registry/cli.py."""
