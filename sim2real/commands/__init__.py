"""One module per ``sim2real`` subcommand, listed in :mod:`sim2real.commands.registry` (the contract is there):
``add_arguments(parser)``, an ``Options`` dataclass, ``options(args)``, ``execute(opts)``, ``report(opts, result)``."""
