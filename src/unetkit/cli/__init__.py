"""The `unetkit` command line."""
