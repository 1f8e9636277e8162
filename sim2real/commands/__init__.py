"""One module per ``sim2real`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int``."""
