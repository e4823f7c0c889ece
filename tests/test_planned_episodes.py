"""A planned episode (gymrec-play --ray) that a fault left unsealed is never published: recovery seals it
as superseded, and a re-recording in the same spool first sets it aside, kept (docs/cluster.md)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest

from gymrec.recorder.cluster.actor import Recorded, RecordingActor, make_room, sealed_copy
from gymrec.recorder.cluster.plan import PlannedEpisode, plan_run, planned_episode
from gymrec.recorder.config import Planned, PlayConfig
from gymrec.recorder.session import episode_attrs
from gymrec.shared.envs.backends import make_env
from gymrec.shared.spool import schema
from gymrec.shared.spool.directory import SET_ASIDE_AREA
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.recovery import recover_orphans
from gymrec.shared.spool.writer import EpisodeWriter
from gymrec.uploader.claims import skip_reason
from tests.recording import new_attrs
from tests.test_endings import assert_all_identical
from tests.test_recovery import _play

PLANNED = planned_episode(3, "unit-run", 5)


def _killed_planned_partial(spool: Path) -> Path:
    made = make_env("ALE/Pong-v5", {})
    try:
        config = PlayConfig(env_id="ALE/Pong-v5", spool=spool, agent="random",
                            planned=Planned(PLANNED.run, PLANNED.index, PLANNED.episode_id))  # fmt: skip
        attrs = new_attrs(episode_attrs(config, made, PLANNED.seed, 15.0, None))
        assert (attrs.episode_id, attrs.run, attrs.plan_index) == (PLANNED.episode_id, "unit-run", 5)
        writer = EpisodeWriter.create(spool, attrs)
        _play(writer, made, PLANNED.seed, 70)
        writer.close_without_sealing()  # as if its actor was killed
    finally:
        made.env.close()
    return spool / schema.partial_name(PLANNED.episode_id)


def test_recovery_seals_a_planned_partial_as_superseded_and_the_uploader_skips_it(spool: Path) -> None:
    _killed_planned_partial(spool)
    (result,) = recover_orphans(spool)
    assert result.sealed is not None and result.rebuilt_steps + result.checked_steps == 70  # verified and kept
    episode = Episode(result.sealed)
    assert episode.end_reason == "discarded" and (episode.attrs.discarded_because or "").startswith("superseded")
    assert skip_reason(episode.attrs) == "discarded"  # never published
    assert sealed_copy(spool, PLANNED.episode_id) is None  # a re-recording is still due here


def test_a_re_recording_sets_the_old_attempt_aside_with_its_reason(spool: Path) -> None:
    partial = _killed_planned_partial(spool)
    make_room(spool, PLANNED, wait=5)
    assert not partial.exists()
    kept = spool / SET_ASIDE_AREA / partial.name
    assert (kept / schema.JOURNAL_NAME).stat().st_size > 0, "nothing was deleted"
    reason = (spool / SET_ASIDE_AREA / (partial.name + ".reason.txt")).read_text()
    assert reason.startswith("superseded") and "unit-run" in reason


@pytest.mark.slow  # replays in a subprocess
def test_an_actor_plays_the_next_episode_while_the_last_one_seals(tmp_path: Path, workdir: Path) -> None:
    """Two threads on one actor, as the driver keeps two episodes with each (recorder.cluster.actor):
    they share the env and the writer process; every episode is sealed once with the steps of a
    one-thread actor recording the same plan, and replays identical."""
    config = PlayConfig(env_id="BreakoutNoFrameskip-v4", spool=tmp_path / "unused", agent="random", max_steps=150)
    plan = plan_run(7, "two-threads", 6)
    found: dict[int, dict[int, int]] = {}
    for threads in (1, 2):
        spool = tmp_path / f"spool-{threads}"
        recorded = _record_with_threads(RecordingActor(config, environ={"GYMREC_SPOOL": str(spool)}), plan, threads)
        assert sorted(r.index for r in recorded) == list(range(6))
        assert len({r.path for r in recorded}) == 6
        found[threads] = {r.index: r.steps for r in recorded}
        assert_all_identical(spool, workdir)
    assert found[2] == found[1]


def _record_with_threads(actor: RecordingActor, plan: list[PlannedEpisode], threads: int) -> list[Recorded]:
    todo: queue.SimpleQueue[PlannedEpisode] = queue.SimpleQueue()
    for planned in plan:
        todo.put(planned)
    recorded: list[Recorded] = []

    def work() -> None:
        while True:
            try:
                planned = todo.get_nowait()
            except queue.Empty:
                return
            recorded.append(actor.record(planned))

    try:
        pool = [threading.Thread(target=work) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        actor.close()
    return recorded
