"""Routing policies: the families, the exact grid engine, keyword rules, learned routers, consensus."""
