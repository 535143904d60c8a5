"""Postgres side of the warehouse: tables, the repository implementing biz ports, migrations."""
