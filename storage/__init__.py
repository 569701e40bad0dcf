"""Storage: sqlmodel tables, the async engine, migrations and demo data."""
