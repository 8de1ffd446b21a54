"""An append-only file of JSON records that a run only ever adds to (one per epoch).

The live diagnosis keeps a record per epoch (~3 KB for a small MLP, ~120 KB for 100 layers), and
a resumed run needs all of them to be judged like an uninterrupted one. Held in each checkpoint's
progress record, they made every checkpoint rewrite the whole run so far: 358 ms and 5 MB a
checkpoint after 1500 epochs of a small MLP. Here each record is written once, as one line, and a
checkpoint's progress record keeps only a :class:`JournalMark` of how far the file went when it
was written (record count, byte size, CRC-32 of those bytes).

Several checkpoints share one journal: an older one reads a prefix of it. A resume cuts the file
back to its checkpoint's mark before anything is appended, so lines written after that checkpoint
(by a run that was killed) are dropped, as its TensorBoard events are.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

JOURNAL_NAME = "epochs.jsonl"


class JournalMark(dict):
    """How far the journal went when a checkpoint was written: ``count``, ``size``, ``crc32``.

    A ``dict``, so that it goes into the checkpoint's JSON record as it is.
    """

    @property
    def count(self) -> int:
        """Number of records."""
        return int(self["count"])

    @property
    def size(self) -> int:
        """Bytes those records take in the file."""
        return int(self["size"])

    @property
    def crc32(self) -> int:
        """CRC-32 of those bytes."""
        return int(self["crc32"])


class Journal:
    """Appends records to one JSON-lines file, each record once.

    Args:
        path: The file (created at the first :meth:`append`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # What the file holds that this object wrote or read back and checked: appends go after it.
        self._mark: JournalMark | None = None

    def append(self, records: Sequence[Any], encode: Callable[[Any], Mapping[str, Any]]) -> JournalMark:
        """Makes the file hold exactly ``records``; returns the mark to store in a checkpoint.

        Records are never changed once written, so only those past the last mark are encoded
        and written (the file is first cut back to that mark: a killed run's lines go). Without
        a mark (a new run, or a resume whose journal did not read back), or when the file is
        shorter than the mark (deleted or cut short since), the file starts over.

        Args:
            records: Every record so far, oldest first (the ones already written included).
            encode: Turns a record into a JSON-serialisable mapping.
        """
        mark = self._mark if self._mark is not None and self._mark.count <= len(records) else JournalMark(count=0, size=0, crc32=0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as handle:  # "ab" creates the file; truncate then moves its end
            if os.fstat(handle.fileno()).st_size < mark.size:
                # Deleted or cut short since (the run directory removed mid-run): truncate padded
                # it with zeros up to the mark, and every later checkpoint's records were lost.
                mark = JournalMark(count=0, size=0, crc32=0)
            lines = b"".join(json.dumps(encode(record), allow_nan=True).encode() + b"\n" for record in records[mark.count :])
            handle.truncate(mark.size)
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
        self._mark = JournalMark(count=len(records), size=mark.size + len(lines), crc32=zlib.crc32(lines, mark.crc32))
        return self._mark

    def read(self, mark: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The records up to ``mark``, or ``None`` when the file no longer holds them intact."""
        mark = JournalMark(mark)
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(mark.size)
        except OSError:
            return None
        lines = data.splitlines()
        if len(data) != mark.size or zlib.crc32(data) != mark.crc32 or len(lines) != mark.count:
            return None
        try:
            return [json.loads(line) for line in lines]
        except ValueError:
            return None

    def continue_from(self, mark: Mapping[str, Any] | None) -> None:
        """Appends go after ``mark`` (the restored checkpoint's); ``None``: the file starts over."""
        self._mark = JournalMark(mark) if mark is not None else None
