"""Every ``skybell-bridge`` command. Each module adds its subcommands with ``add_parsers(sub)``
and runs them as ``async (settings, args) -> exit code``; ``bridge.__main__`` only parses the
arguments and dispatches.

Modules import what a command needs inside the command: starting the CLI for ``devices`` must
not load the simulator, aiortc or PyAV.
"""
