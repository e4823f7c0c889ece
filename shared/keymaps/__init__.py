"""Keymaps: the builtin TOML files, parsing them, and resolving keys to env actions."""
