"""Kept answer audio in screening records: what the retention purge does to the references."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm.attributes import flag_modified

from results.models import ScreeningRecord
from results.store import Store


def forget_audio(store: Store, refs: Collection[str], *, batch: int = 500) -> int:
    """Mark every answer whose kept audio is in `refs` as purged (`audio` -> null, `audio_purged` -> true).

    Called before the files are deleted, so a record never names a file that is gone. Returns the number
    of records changed. Runs in batches, each its own transaction; running it again is harmless.
    """
    wanted = set(refs)
    if not wanted:
        return 0
    changed = 0
    last_id = 0
    while True:
        with store.session() as s:
            rows = list(
                s.scalars(
                    select(ScreeningRecord)
                    .where(ScreeningRecord.id > last_id)
                    .order_by(ScreeningRecord.id)
                    .limit(batch)
                )
            )
            if not rows:
                return changed
            last_id = rows[-1].id
            for rec in rows:
                touched = False
                answers = dict(rec.answers or {})
                for name, ans in answers.items():
                    if isinstance(ans, dict) and ans.get("audio") in wanted:
                        answers[name] = {**ans, "audio": None, "audio_purged": True}
                        touched = True
                if touched:
                    rec.answers = answers
                    flag_modified(rec, "answers")
                    changed += 1
