"""The SQLite store: one file, WAL, one writer thread (the embedded default).

store.py (:class:`~riverbed.stores.sqlite.store.SQLiteStore`), writer.py (the group-commit
writer thread), checkpoints.py (WAL checkpoints in a process of their own), learns.py (the
learn log's blocks), schema.py (the layout and its number), lock.py (one process a file),
and the cache, job and token tables (kv.py, jobs.py, tokens.py).
"""
