"""One module per `ferry` subcommand; each has HELP, `configure(parser)` and `run(args)`."""
