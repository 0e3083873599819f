"""One module per `vla-safety` subcommand; each defines `register(subparsers)` setting `func`."""
