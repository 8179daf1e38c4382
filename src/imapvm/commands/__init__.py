"""CLI subcommands, one module each.

Every module here defines `register(subparsers)`, which adds its subparser and sets
`handler=<function(args) -> int>` as a default. `imapvm.cli` discovers the modules, so adding a
command never touches a shared list.
"""
