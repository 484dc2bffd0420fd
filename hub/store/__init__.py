"""Data access: models, engine, migrations and one query module per aggregate."""
