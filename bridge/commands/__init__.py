"""One module per `indie` subcommand, each with `add_parser(subparsers)` and `run(args) -> int`."""
