"""Warehouse domain: stock, reservations and how an order is split across warehouses (pure, no I/O)."""
