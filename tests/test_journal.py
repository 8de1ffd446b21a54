"""The append-only journal that checkpoints share for the records a run only adds to."""

from __future__ import annotations

from trainkit.journal import Journal


def _encode_counting(calls: list[int]):
    def encode(record: int) -> dict[str, int]:
        calls.append(record)
        return {"epoch": record}

    return encode


def test_each_record_is_encoded_and_written_once(tmp_path):
    journal, calls = Journal(tmp_path / "epochs.jsonl"), []
    records: list[int] = []
    marks = []
    for epoch in range(4):
        records.append(epoch)
        marks.append(journal.append(records, _encode_counting(calls)))
    assert calls == [0, 1, 2, 3]  # not 0, 0 1, 0 1 2, ...
    assert [m.count for m in marks] == [1, 2, 3, 4]
    assert (tmp_path / "epochs.jsonl").read_text().splitlines() == [f'{{"epoch": {e}}}' for e in range(4)]
    # Every checkpoint's mark still reads its own prefix of the shared file.
    assert [journal.read(m) for m in marks] == [[{"epoch": e} for e in range(n)] for n in (1, 2, 3, 4)]


def test_a_resume_drops_the_records_a_killed_run_wrote_after_its_checkpoint(tmp_path):
    path = tmp_path / "epochs.jsonl"
    killed, calls = Journal(path), []
    checkpointed = killed.append([0, 1], _encode_counting(calls))
    killed.append([0, 1, 2, 3], _encode_counting(calls))  # a later checkpoint whose record was lost
    resumed = Journal(path)
    assert resumed.read(checkpointed) == [{"epoch": 0}, {"epoch": 1}]
    resumed.continue_from(checkpointed)
    mark = resumed.append([0, 1, 7], _encode_counting(calls))
    assert resumed.read(mark) == [{"epoch": 0}, {"epoch": 1}, {"epoch": 7}]
    assert path.read_text().splitlines()[2:] == ['{"epoch": 7}']


def test_a_changed_shortened_or_missing_journal_does_not_read_back(tmp_path):
    path = tmp_path / "epochs.jsonl"
    mark = Journal(path).append([1, 2], lambda r: {"epoch": r})
    path.write_text(path.read_text().replace("2", "3"))
    assert Journal(path).read(mark) is None
    path.write_text('{"epoch": 1}\n')
    assert Journal(path).read(mark) is None
    path.unlink()
    assert Journal(path).read(mark) is None


def test_without_a_mark_to_go_on_from_the_journal_starts_over(tmp_path):
    path = tmp_path / "epochs.jsonl"
    Journal(path).append([1, 2, 3], lambda r: {"epoch": r})
    fresh = Journal(path)
    fresh.continue_from(None)  # the checkpoint's journal did not read back
    mark = fresh.append([5], lambda r: {"epoch": r})
    assert mark.count == 1 and path.read_text() == '{"epoch": 5}\n'


def test_a_journal_deleted_or_cut_short_while_the_run_trains_is_written_whole_again(tmp_path):
    # The run directory removed mid-run (rm -rf, then checkpoints/ made again): the next append cut
    # the new empty file "back" to the old mark, padding it with 2351 zero bytes, and every later
    # checkpoint's records failed to read back on resume (checkpoint-corrupt, the diagnosis lost).
    path = tmp_path / "checkpoints" / "epochs.jsonl"
    journal = Journal(path)
    journal.append([0, 1], lambda r: {"epoch": r})
    path.unlink()
    mark = journal.append([0, 1, 2], lambda r: {"epoch": r})
    assert b"\0" not in path.read_bytes() and Journal(path).read(mark) == [{"epoch": 0}, {"epoch": 1}, {"epoch": 2}]
    with open(path, "r+b") as handle:
        handle.truncate(5)
    mark = journal.append([0, 1, 2, 3], lambda r: {"epoch": r})
    assert Journal(path).read(mark) == [{"epoch": e} for e in range(4)]
