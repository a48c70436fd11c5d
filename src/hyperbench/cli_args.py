"""Argument handling shared by the commands that read the store (results, plot, compare, dashboard)."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import ConfigError


class Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing usage, so every command reports bad
    arguments in the one format: `hyperbench CMD: error: <field>: <what is allowed>`, exit 2."""

    def error(self, message: str):
        raise ConfigError("arguments", message)

    def parse_args(self, args=None, namespace=None):
        # KEY=VALUE filters may come after options too (`plot time --results-dir R seq_len=4096`),
        # which plain parse_args rejects once an option has ended the positionals.
        return self.parse_intermixed_args(args, namespace)


def filters(tokens: list[str]) -> dict[str, Any]:
    """KEY=VALUE tokens -> equality filters for store.read; `null` matches a missing value and the
    same key twice means either value."""
    where: dict[str, Any] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(token, "expected KEY=VALUE, where KEY is a column of the store")
        value = None if value.strip().lower() in ("null", "none") else value
        if key in where:
            prev = where[key] if isinstance(where[key], list) else [where[key]]
            where[key] = prev + [value]
        else:
            where[key] = value
    return where
