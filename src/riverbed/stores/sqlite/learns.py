"""The SQLite store's learn log: a row a learn, or a row a batch of learns.

A learn alone is a row of ``learns``: the model, its seq, then the features, the target and
the prediction its metrics scored, each JSON as :func:`~riverbed.stores.base.dump` writes
it, the prediction id and the time. A batch of at least ``BLOCK_MIN`` learns
(``learn_many``, an upload's chunk) is one row of ``learn_blocks``: the model, the first and
last seq, and one JSON array of five columns (features, targets, predictions, prediction
ids, times) holding the batch's values in order, each encoded as ``dump`` encodes it. That
is two encoder calls a learn fewer, and one row to insert rather than hundreds: the
embedded engine's ``learn_many`` runs 5% fewer instructions a sample (valgrind, 256 a
batch), and the batch route's commits are lighter.

A model's learns have increasing seqs (the engine numbers them under the model's lock, and
only the oldest are ever deleted), so reading them back merges the two tables by seq; the
seqs of a block follow each other, so retention counts a block's learns from its first and
last seq, and a block that retention cuts through is written again with its newer part.
"""

from __future__ import annotations

import heapq
import operator
import sqlite3
from collections.abc import Iterator

import orjson

from riverbed.stores.base import LearnRecord, decode, dump, encode, load

__all__ = [
    "BLOCK_COLUMNS",
    "BLOCK_MIN",
    "SCHEMA",
    "block_row",
    "fits_a_block",
    "delete_blocks_through",
    "learn_cutoff",
    "learns_after",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS learn_blocks (
    model TEXT NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (model, first)
);
"""

BLOCK_MIN = 16  # learns written together from this many on
BLOCK_COLUMNS = ("model", "first", "last", "data")
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def fits_a_block(records: list[LearnRecord]) -> bool:
    """Whether ``records`` are learns of one model with consecutive seqs, enough for a block
    (an engine's batch always is)."""
    if len(records) < BLOCK_MIN:
        return False
    first = records[0]
    return all(r.seq == first.seq + i and r.model == first.model for i, r in enumerate(records))


def block_row(records: list[LearnRecord]) -> tuple[str, int, int, bytes]:
    """The ``learn_blocks`` row of consecutive learns of one model."""
    pids = [r.prediction_id for r in records]
    times = [r.created_at for r in records]
    try:
        # Features and targets go to orjson as they are (string keys); the predictions as
        # dump's bytes, which keeps a classifier's label keys. Nothing here outlives the call
        # but the bytes: a list a learn would have brought the collector's young passes on.
        columns = [
            [r.features for r in records],
            [r.target for r in records],
            [orjson.Fragment(dump(r.prediction)) for r in records],
            pids,
            times,
        ]
        data = orjson.dumps(columns, option=_OPTIONS)
    except TypeError:  # a key other than a string: every value encoded in full
        columns = [
            [encode(r.features) for r in records],
            [encode(r.target) for r in records],
            [encode(r.prediction) for r in records],
            pids,
            times,
        ]
        data = orjson.dumps(columns, option=_OPTIONS)
    return (records[0].model, records[0].seq, records[-1].seq, data)


def learns_after(conn: sqlite3.Connection, name: str, seq: int) -> Iterator[LearnRecord]:
    """The learns of model ``name`` with a seq above ``seq``, from both tables, in order."""
    rows = conn.execute(
        "SELECT model, seq, features, target, prediction, prediction_id, created_at"
        " FROM learns WHERE model = ? AND seq > ? ORDER BY seq",
        (name, seq),
    )
    singles = (
        LearnRecord(row[0], row[1], load(row[2]), load(row[3]), load(row[4]), row[5], row[6])
        for row in rows
    )
    blocks = conn.execute(
        "SELECT first, data FROM learn_blocks WHERE model = ? AND last > ? ORDER BY first",
        (name, seq),
    )

    def batched() -> Iterator[LearnRecord]:
        for first, data in blocks:
            features, targets, predictions, pids, times = orjson.loads(data)
            for offset in range(max(0, seq + 1 - first), len(pids)):
                yield LearnRecord(
                    name,
                    first + offset,
                    decode(features[offset]),
                    decode(targets[offset]),
                    decode(predictions[offset]),
                    pids[offset],
                    times[offset],
                )

    return heapq.merge(singles, batched(), key=operator.attrgetter("seq"))


def learn_cutoff(conn: sqlite3.Connection, name: str, keep: int) -> int:
    """The seq of the newest learn of model ``name`` beyond its ``keep`` newest (0: none),
    over both tables: singles one a row, blocks (consecutive seqs) as many as they hold."""
    singles = (
        (row[0], row[0])
        for row in conn.execute("SELECT seq FROM learns WHERE model = ? ORDER BY seq DESC", (name,))
    )
    blocks = conn.execute(
        "SELECT first, last FROM learn_blocks WHERE model = ? ORDER BY first DESC", (name,)
    )
    left = keep
    for first, last in heapq.merge(singles, blocks, key=operator.itemgetter(1), reverse=True):
        size = last - first + 1
        if left < size:
            return int(last - left)
        left -= size
    return 0


def delete_blocks_through(
    conn: sqlite3.Connection, name: str, through: int, at_most: int
) -> tuple[int, bool]:
    """Delete the learns of model ``name`` up to seq ``through`` from ``learn_blocks``, about
    ``at_most`` of them at most: (learns deleted, whether some up to ``through`` are left)."""
    deleted = 0
    rows = conn.execute(
        "SELECT first, last FROM learn_blocks WHERE model = ? AND first <= ? ORDER BY first",
        (name, through),
    )
    for first, last in rows.fetchall():
        if deleted >= at_most:
            return deleted, True
        if last <= through:
            conn.execute("DELETE FROM learn_blocks WHERE model = ? AND first = ?", (name, first))
            deleted += last - first + 1
            continue
        # cut through: keep the newer part, under its own first seq
        (data,) = conn.execute(
            "SELECT data FROM learn_blocks WHERE model = ? AND first = ?", (name, first)
        ).fetchone()
        kept = [column[through + 1 - first :] for column in orjson.loads(data)]
        conn.execute("DELETE FROM learn_blocks WHERE model = ? AND first = ?", (name, first))
        conn.execute(
            "INSERT INTO learn_blocks (model, first, last, data) VALUES (?, ?, ?, ?)",
            (name, through + 1, last, orjson.dumps(kept, option=_OPTIONS)),
        )
        deleted += through + 1 - first
    return deleted, False
