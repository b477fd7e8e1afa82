"""Results store: SQLAlchemy models, migrations, queries and exports. The only package that writes SQL."""
