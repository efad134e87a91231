"""The CLI's commands beyond the core ones in ``bridge.__main__``; each module adds its own
subcommands to the parser with ``add_parsers(sub)``."""
