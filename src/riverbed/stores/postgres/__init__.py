"""The PostgreSQL store (``pip install 'riverbed[postgresql]'``; docs/postgresql.md).

store.py (:class:`~riverbed.stores.postgres.store.PostgresStore`), writer.py (the
group-commit writer thread and its connection), schema.py (the layout and its number).
"""
