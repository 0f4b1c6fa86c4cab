use super::*;

const TOL: f64 = 60.0;

fn file(ts: f64, sb: u32) -> NewFile {
    NewFile {
        path: format!("/in/{}", crate::names::subband_file_name(ts, sb)),
        timestamp: ts,
        subband_idx: sb,
        size_bytes: Some(10),
        mtime: None,
        meta_json: None,
    }
}

fn open() -> (tempfile::TempDir, Queue) {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&dir.path().join("q.sqlite3")).unwrap();
    (dir, queue)
}

const T0: f64 = 1_760_362_083.0;

#[test]
fn jittered_subbands_form_one_group_named_by_the_earliest() {
    let (_dir, mut q) = open();
    let offsets = [3.0, -2.0, 4.5, 0.0];
    let mut last = None;
    for (sb, off) in offsets.iter().enumerate() {
        last = Some(
            q.register_file(&file(T0 + off, sb as u32), 4, TOL, T0)
                .unwrap(),
        );
    }
    match last.unwrap() {
        Registration::Added {
            group_id,
            state,
            subbands,
        } => {
            assert_eq!(group_id, group_id_for(T0 - 2.0));
            assert_eq!(state, GroupState::Pending);
            assert_eq!(subbands, 4);
        }
        other => panic!("{other:?}"),
    }
    let stats = q.stats(T0).unwrap();
    assert_eq!(stats.count(GroupState::Pending), 1);
    assert_eq!(stats.count(GroupState::Collecting), 0);
}

#[test]
fn groups_further_apart_than_the_tolerance_stay_separate() {
    let (_dir, mut q) = open();
    q.register_file(&file(T0, 0), 2, TOL, T0).unwrap();
    q.register_file(&file(T0 + 309.0, 0), 2, TOL, T0).unwrap();
    assert_eq!(q.stats(T0).unwrap().count(GroupState::Collecting), 2);
}

#[test]
fn registration_is_idempotent_and_duplicates_are_recorded() {
    let (_dir, mut q) = open();
    let f = file(T0, 0);
    assert!(matches!(
        q.register_file(&f, 2, TOL, T0).unwrap(),
        Registration::Added { .. }
    ));
    assert_eq!(
        q.register_file(&f, 2, TOL, T0).unwrap(),
        Registration::AlreadyKnown
    );
    let mut dup = file(T0 + 1.0, 0);
    dup.path = "/in/other_sb00.hdf5".into();
    assert!(matches!(
        q.register_file(&dup, 2, TOL, T0).unwrap(),
        Registration::Duplicate { .. }
    ));
    assert_eq!(
        q.register_file(&dup, 2, TOL, T0).unwrap(),
        Registration::AlreadyKnown
    );
    let detail = q.group(&group_id_for(T0)).unwrap().unwrap();
    assert_eq!(detail.files.len(), 1);
    assert_eq!(detail.duplicates, vec!["/in/other_sb00.hdf5".to_string()]);
}

#[test]
fn incomplete_groups_fail_naming_missing_subbands_and_reopen_when_completed() {
    let (_dir, mut q) = open();
    q.register_file(&file(T0, 0), 3, TOL, T0).unwrap();
    q.register_file(&file(T0, 2), 3, TOL, T0).unwrap();
    assert!(q.expire_incomplete(T0 + 10.0, 900.0).unwrap().is_empty());
    let failed = q.expire_incomplete(T0 + 901.0, 900.0).unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].1.contains("missing sb01"), "{}", failed[0].1);
    assert!(failed[0].1.contains("2/3"), "{}", failed[0].1);
    // The straggler arrives: the group is pending again.
    let r = q
        .register_file(&file(T0 + 1.0, 1), 3, TOL, T0 + 1000.0)
        .unwrap();
    assert!(
        matches!(
            r,
            Registration::Added {
                state: GroupState::Pending,
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn claim_fail_retry_complete_cycle() {
    let (_dir, mut q) = open();
    q.register_file(&file(T0, 0), 1, TOL, T0).unwrap();
    let policy = RetryPolicy {
        max_retries: 2,
        backoff_s: 10.0,
        backoff_max_s: 15.0,
    };
    let g = q.claim_next(T0).unwrap().unwrap();
    assert_eq!(g.attempt, 1);
    assert!(
        q.claim_next(T0).unwrap().is_none(),
        "only one pending group"
    );
    let out = q
        .fail_attempt(&g.group_id, g.attempt, "boom", &policy, T0)
        .unwrap();
    assert_eq!(
        out,
        FailOutcome::Retrying {
            retry_count: 1,
            next_attempt_at: T0 + 10.0
        }
    );
    assert!(
        q.claim_next(T0 + 5.0).unwrap().is_none(),
        "back-off not elapsed"
    );
    assert_eq!(q.next_due_at().unwrap(), Some(T0 + 10.0));
    let g = q.claim_next(T0 + 10.0).unwrap().unwrap();
    let out = q
        .fail_attempt(&g.group_id, g.attempt, "boom", &policy, T0 + 10.0)
        .unwrap();
    assert_eq!(
        out,
        FailOutcome::Retrying {
            retry_count: 2,
            next_attempt_at: T0 + 25.0
        }
    );
    let g = q.claim_next(T0 + 30.0).unwrap().unwrap();
    assert_eq!(g.attempt, 3);
    q.complete(
        &g.group_id,
        g.attempt,
        &Timings {
            total_time: Some(1.5),
            ..Default::default()
        },
        None,
        T0 + 31.0,
    )
    .unwrap();
    let detail = q.group(&g.group_id).unwrap().unwrap();
    assert_eq!(detail.summary.state, GroupState::Completed);
    assert_eq!(detail.summary.retry_count, 2);
    assert_eq!(detail.attempts.len(), 3);
    assert_eq!(detail.timings.unwrap().total_time, Some(1.5));
    // Completing twice is refused.
    assert!(matches!(
        q.complete(&g.group_id, g.attempt, &Timings::default(), None, T0 + 32.0),
        Err(QueueError::WrongState { .. })
    ));
}

#[test]
fn retries_run_out() {
    let (_dir, mut q) = open();
    q.register_file(&file(T0, 0), 1, TOL, T0).unwrap();
    let policy = RetryPolicy {
        max_retries: 0,
        backoff_s: 1.0,
        backoff_max_s: 1.0,
    };
    let g = q.claim_next(T0).unwrap().unwrap();
    assert_eq!(
        q.fail_attempt(&g.group_id, g.attempt, "bad", &policy, T0)
            .unwrap(),
        FailOutcome::Failed { retry_count: 0 }
    );
    let stats = q.stats(T0).unwrap();
    assert_eq!(stats.count(GroupState::Failed), 1);
    // An operator retry gives it a fresh budget.
    q.retry_failed(&g.group_id, T0 + 1.0).unwrap();
    assert_eq!(q.stats(T0).unwrap().count(GroupState::Pending), 1);
    assert!(matches!(
        q.retry_failed(&g.group_id, T0 + 1.0),
        Err(QueueError::WrongState { .. })
    ));
    assert!(matches!(
        q.retry_failed("nope", T0),
        Err(QueueError::UnknownGroup(_))
    ));

    // Once retention has removed a failed group's inputs, a retry is refused
    // instead of failing again for missing files.
    let g = q.claim_next(T0 + 2.0).unwrap().expect("claimable");
    q.fail_attempt(&g.group_id, g.attempt, "bad", &policy, T0 + 2.0)
        .unwrap();
    q.conn
        .execute(
            "UPDATE ingest_queue SET inputs_removed_at = ?1 WHERE group_id = ?2",
            rusqlite::params![T0 + 3.0, g.group_id],
        )
        .unwrap();
    let refused = q.retry_failed(&g.group_id, T0 + 4.0);
    assert!(
        matches!(refused, Err(QueueError::InputsRemoved { .. })),
        "{refused:?}"
    );
    assert_eq!(q.stats(T0).unwrap().count(GroupState::Failed), 1);
}

/// Disk back-pressure: the worker looks at the next group before claiming it,
/// and an attempt that ran out of space is deferred without using a retry.
#[test]
fn a_deferred_attempt_keeps_the_retry_budget_and_waits_its_delay() {
    let (_dir, mut q) = open();
    q.register_file(&file(T0, 0), 1, TOL, T0).unwrap();
    let files = q.peek_next_due(T0).unwrap().unwrap();
    assert_eq!(q.stats(T0).unwrap().count(GroupState::Pending), 1);
    let g = q.claim_next(T0).unwrap().unwrap();
    assert_eq!(g.files, files);
    q.defer_attempt(
        &g.group_id,
        g.attempt,
        "no space left on output_dir",
        30.0,
        T0,
    )
    .unwrap();
    assert!(q.peek_next_due(T0 + 29.0).unwrap().is_none());
    assert!(q.claim_next(T0 + 29.0).unwrap().is_none());
    let again = q.claim_next(T0 + 30.0).unwrap().unwrap();
    assert_eq!(again.retry_count, 0);
    assert_eq!(again.attempt, 2);
    let detail = q.group(&g.group_id).unwrap().unwrap();
    assert_eq!(
        detail.summary.error.as_deref(),
        Some("no space left on output_dir")
    );
    q.complete(
        &again.group_id,
        again.attempt,
        &Timings::default(),
        None,
        T0 + 31.0,
    )
    .unwrap();
    assert!(matches!(
        q.defer_attempt(&g.group_id, again.attempt, "late", 1.0, T0 + 32.0),
        Err(QueueError::WrongState { .. })
    ));
}

#[test]
fn the_claim_pause_round_trips_through_the_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite3");
    let mut q = Queue::open(&path).unwrap();
    q.heartbeat(42, T0, T0 + 1.0).unwrap();
    let pause = ClaimPause {
        dir: "output_dir".into(),
        reason: "/data/ms has 1.0 GiB free, needs 10.0 GiB".into(),
        since: T0 + 1.0,
    };
    q.set_claim_pause(Some(&pause)).unwrap();
    // The heartbeat goes on without touching the pause.
    q.heartbeat(42, T0, T0 + 3.0).unwrap();
    let reader = QueueReader::open(&path).unwrap();
    assert_eq!(
        reader.heartbeat().unwrap().unwrap().claim_paused,
        Some(pause)
    );
    q.set_claim_pause(None).unwrap();
    assert_eq!(reader.heartbeat().unwrap().unwrap().claim_paused, None);
}

#[test]
fn crash_recovery_requeues_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite3");
    {
        let mut q = Queue::open(&path).unwrap();
        q.register_file(&file(T0, 0), 1, TOL, T0).unwrap();
        q.claim_next(T0).unwrap().unwrap();
    }
    let mut q = Queue::open(&path).unwrap();
    assert_eq!(
        q.recover_in_progress(T0 + 1.0).unwrap(),
        vec![group_id_for(T0)]
    );
    let g = q.claim_next(T0 + 2.0).unwrap().unwrap();
    assert_eq!(g.retry_count, 1);
    assert_eq!(g.attempt, 2);
}

#[test]
fn stats_counts_rate_and_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite3");
    let mut q = Queue::open(&path).unwrap();
    for i in 0..3 {
        q.register_file(&file(T0 + 400.0 * f64::from(i), 0), 1, TOL, T0)
            .unwrap();
    }
    q.register_file(&file(T0 + 5000.0, 0), 2, TOL, T0).unwrap();
    for _ in 0..2 {
        let g = q.claim_next(T0).unwrap().unwrap();
        q.complete(&g.group_id, g.attempt, &Timings::default(), None, T0 + 10.0)
            .unwrap();
    }
    q.heartbeat(42, T0, T0 + 11.0).unwrap();
    let reader = QueueReader::open(&path).unwrap();
    let stats = reader.stats(T0 + 20.0).unwrap();
    assert_eq!(stats.count(GroupState::Completed), 2);
    assert_eq!(stats.count(GroupState::Pending), 1);
    assert_eq!(stats.count(GroupState::Collecting), 1);
    assert_eq!(stats.count(GroupState::InProgress), 0);
    assert_eq!(stats.completed_last_hour, 2);
    assert_eq!(stats.processing_rate_per_hour, 2.0);
    assert_eq!(
        reader
            .stats(T0 + 10.0 + 3601.0)
            .unwrap()
            .completed_last_hour,
        0
    );
    assert!(
        stats
            .summary_line()
            .starts_with("collecting 1, pending 1, in_progress 0, completed 2, failed 0")
    );
    assert_eq!(reader.heartbeat().unwrap().unwrap().pid, 42);
    let completed = reader
        .groups(&GroupFilter {
            state: Some(GroupState::Completed),
            limit: Some(1),
            before: None,
        })
        .unwrap();
    assert_eq!(completed.len(), 1);
    let older = reader
        .groups(&GroupFilter {
            state: Some(GroupState::Completed),
            limit: Some(10),
            before: Some(completed[0].group_id.clone()),
        })
        .unwrap();
    assert_eq!(older.len(), 1);
    assert!(older[0].group_id < completed[0].group_id);
}

#[test]
fn reader_reports_a_missing_db() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        QueueReader::open(&dir.path().join("none.sqlite3")),
        Err(QueueError::Missing(_))
    ));
}

#[test]
fn retry_requests_reject_path_tricks() {
    let dir = tempfile::tempdir().unwrap();
    assert!(request_retry(dir.path(), "../etc").is_err());
    assert!(request_retry(dir.path(), "").is_err());
    let path = request_retry(dir.path(), "2025-10-13T13:28:03").unwrap();
    assert!(path.exists());
}

#[test]
fn a_rejected_file_that_is_rewritten_can_be_registered() {
    let (_dir, mut q) = open();
    let f = file(T0, 0);
    q.reject_file(&f.path, "truncated", Some(5), Some(100.0), T0)
        .unwrap();
    assert!(
        q.is_rejected_unchanged(&f.path, Some(5), Some(100.0))
            .unwrap()
    );
    assert!(
        !q.is_rejected_unchanged(&f.path, Some(10), Some(101.0))
            .unwrap()
    );
    assert!(!q.is_known_path(&f.path).unwrap());
    assert!(matches!(
        q.register_file(&f, 1, TOL, T0).unwrap(),
        Registration::Added { .. }
    ));
    assert!(
        !q.is_rejected_unchanged(&f.path, Some(5), Some(100.0))
            .unwrap()
    );
    assert_eq!(q.stats(T0).unwrap().rejected_files, 0);
}

#[test]
fn a_closed_group_records_late_files_while_an_incomplete_failure_takes_stragglers() {
    let (_dir, mut q) = open();
    let group_id = group_id_for(T0);
    q.register_file(&file(T0, 0), 2, TOL, T0).unwrap();
    q.register_file(&file(T0 + 1.0, 1), 2, TOL, T0).unwrap();
    // Pending (complete): a new subband index is late, not attached.
    let late = q.register_file(&file(T0 + 2.0, 2), 4, TOL, T0).unwrap();
    assert_eq!(
        late,
        Registration::Late {
            group_id: group_id.clone(),
            group_state: GroupState::Pending
        }
    );
    assert_eq!(
        q.register_file(&file(T0 + 2.0, 2), 4, TOL, T0).unwrap(),
        Registration::AlreadyKnown
    );
    // Converting: late too. A second copy of a held subband stays a duplicate.
    q.claim_next(T0).unwrap().unwrap();
    let late = q.register_file(&file(T0 + 3.0, 3), 4, TOL, T0).unwrap();
    assert!(
        matches!(
            late,
            Registration::Late {
                group_state: GroupState::InProgress,
                ..
            }
        ),
        "{late:?}"
    );
    let dup = q.register_file(&file(T0 + 4.0, 0), 4, TOL, T0).unwrap();
    assert!(matches!(dup, Registration::Duplicate { .. }), "{dup:?}");
    assert_eq!(q.group(&group_id).unwrap().unwrap().files.len(), 2);
    let stats = q.stats(T0).unwrap();
    assert_eq!((stats.late_files, stats.unrecognised_files), (2, 0));

    // A group failed as incomplete still takes its missing subband.
    let t1 = T0 + 3600.0;
    q.register_file(&file(t1, 0), 2, TOL, t1).unwrap();
    q.expire_incomplete(t1 + 901.0, 900.0).unwrap();
    let straggler = q.register_file(&file(t1, 1), 2, TOL, t1 + 902.0).unwrap();
    assert!(
        matches!(
            straggler,
            Registration::Added {
                state: GroupState::Pending,
                ..
            }
        ),
        "{straggler:?}"
    );
    assert_eq!(q.stats(t1).unwrap().late_files, 2);
}

#[test]
fn unrecognised_files_are_new_once_and_listed_newest_first() {
    let (dir, mut q) = open();
    let entries = [("/in/a", "reason a", Some(1)), ("/in/b", "reason b", None)];
    assert_eq!(q.record_unrecognised(&entries, T0).unwrap(), [true, true]);
    let again = [("/in/a", "reason a2", Some(2))];
    assert_eq!(q.record_unrecognised(&again, T0 + 5.0).unwrap(), [false]);
    assert_eq!(q.stats(T0).unwrap().unrecognised_files, 2);
    let reader = QueueReader::open(&dir.path().join("q.sqlite3")).unwrap();
    let listed = reader.unrecognised_files(10).unwrap();
    assert_eq!(listed[0].path, "/in/a");
    assert_eq!(listed[0].reason, "reason a2");
    assert_eq!(
        (listed[0].first_seen_at, listed[0].last_seen_at),
        (T0, T0 + 5.0)
    );
    assert_eq!(listed[0].size_bytes, Some(2));
    assert_eq!(listed[1].path, "/in/b");
}

/// A queue DB file with one group, and a raw connection to plant rows with.
fn planted() -> (tempfile::TempDir, Queue, rusqlite::Connection) {
    let (dir, mut q) = open();
    q.register_file(&file(T0, 0), 2, TOL, T0).unwrap();
    let raw = rusqlite::Connection::open(dir.path().join("q.sqlite3")).unwrap();
    (dir, q, raw)
}

fn assert_unknown<T: std::fmt::Debug>(result: Result<T, QueueError>, column: &str, value: &str) {
    match result {
        Err(QueueError::UnknownValue {
            column: found_column,
            value: found_value,
        }) => assert_eq!(
            (found_column.as_str(), found_value.as_str()),
            (column, value)
        ),
        other => panic!("expected unknown {column} {value:?}, got {other:?}"),
    }
}

const PLANTED_ID: &str = "2025-10-13T10:00:00";

#[test]
fn an_unknown_state_in_the_db_is_an_error_naming_it_not_a_silent_state() {
    let (dir, mut q, raw) = planted();
    raw.execute(
        "INSERT INTO ingest_queue(group_id, state, received_at, last_update, expected_subbands, group_ts)
         VALUES (?1, 'bogus', ?2, ?2, 2, ?3)",
        rusqlite::params![PLANTED_ID, T0, group_timestamp_from_id(PLANTED_ID).unwrap()],
    )
    .unwrap();
    let reader = QueueReader::open(&dir.path().join("q.sqlite3")).unwrap();
    assert_unknown(reader.stats(T0), "state", "bogus");
    assert_unknown(reader.groups(&GroupFilter::default()), "state", "bogus");
    assert_unknown(reader.group(PLANTED_ID), "state", "bogus");
    assert_unknown(q.stats(T0), "state", "bogus");
    // A file for that group neither joins it nor is recorded late under a guess.
    let ts = group_timestamp_from_id(PLANTED_ID).unwrap();
    assert_unknown(q.register_file(&file(ts, 1), 2, TOL, T0), "state", "bogus");
    assert_unknown(q.retry_failed(PLANTED_ID, T0), "state", "bogus");
}

#[test]
fn a_stale_count_row_of_an_unknown_state_with_no_groups_is_ignored() {
    let (dir, _q, raw) = planted();
    raw.execute(
        "INSERT INTO ingest_queue(group_id, state, received_at, last_update) VALUES (?1, 'bogus', ?2, ?2)",
        rusqlite::params![PLANTED_ID, T0],
    )
    .unwrap();
    raw.execute("DELETE FROM ingest_queue WHERE group_id = ?1", [PLANTED_ID])
        .unwrap();
    let reader = QueueReader::open(&dir.path().join("q.sqlite3")).unwrap();
    assert_eq!(reader.stats(T0).unwrap().count(GroupState::Collecting), 1);
}

#[test]
fn an_unknown_stage_or_attempt_outcome_in_the_db_is_an_error_naming_it() {
    let (dir, mut q, raw) = planted();
    let group_id = group_id_for(T0);
    raw.execute(
        "UPDATE ingest_queue SET processing_stage = 'teleporting' WHERE group_id = ?1",
        [&group_id],
    )
    .unwrap();
    let reader = QueueReader::open(&dir.path().join("q.sqlite3")).unwrap();
    assert_unknown(reader.group(&group_id), "processing_stage", "teleporting");
    assert_unknown(
        reader.groups(&GroupFilter::default()),
        "processing_stage",
        "teleporting",
    );

    raw.execute(
        "UPDATE ingest_queue SET processing_stage = 'collecting' WHERE group_id = ?1",
        [&group_id],
    )
    .unwrap();
    q.register_file(&file(T0 + 1.0, 1), 2, TOL, T0).unwrap();
    q.claim_next(T0).unwrap().unwrap();
    raw.execute(
        "UPDATE group_attempts SET outcome = 'vanished' WHERE group_id = ?1",
        [&group_id],
    )
    .unwrap();
    assert_unknown(reader.group(&group_id), "outcome", "vanished");
}

#[test]
fn an_unknown_late_file_group_state_is_an_error_naming_it() {
    let (dir, _q, raw) = planted();
    raw.execute(
        "INSERT INTO late_files(path, group_id, subband_idx, group_state, seen_at)
         VALUES ('/in/x_sb03.hdf5', ?1, 3, 'bogus', ?2)",
        rusqlite::params![group_id_for(T0), T0],
    )
    .unwrap();
    let reader = QueueReader::open(&dir.path().join("q.sqlite3")).unwrap();
    assert_unknown(reader.late_files(10), "group_state", "bogus");
}
