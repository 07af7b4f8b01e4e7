"""CLI subcommands, one module each (see pocketquant/cli.py)."""
