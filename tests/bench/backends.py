"""Running one benchmark on SQLite and/or PostgreSQL (a throwaway server unless --pg-url)."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from typing import Any, Awaitable, Callable

from tests.conftest import _admin

Run = Callable[[str, str, argparse.Namespace], Awaitable[Any]]


def add_backend_options(parser: argparse.ArgumentParser, database: str) -> None:
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", help=f"admin URL of a PostgreSQL server (a database {database} is made)")


def run_on_backends(args: argparse.Namespace, database: str, run: Run) -> None:
    """`run(name, url, args)` on the backends `args.backend` names, each on a fresh database."""
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="minyi-bench-") as tmp:
            asyncio.run(run("SQLite", f"sqlite+aiosqlite:///{tmp}/bench.db", args))
    if args.backend in ("postgresql", "both"):
        from tests.pgserver import PostgresServer

        server = None if args.pg_url else PostgresServer()
        admin = args.pg_url or server.start()  # type: ignore[union-attr]
        try:
            asyncio.run(_admin(admin, f"DROP DATABASE IF EXISTS {database}", f"CREATE DATABASE {database}"))
            asyncio.run(run("PostgreSQL", admin.rsplit("/", 1)[0] + f"/{database}", args))
        finally:
            if server is not None:
                server.stop()
