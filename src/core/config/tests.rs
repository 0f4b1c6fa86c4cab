use super::*;
use serde_json::json;

fn store_with_dirs() -> (tempfile::TempDir, ConfigStore) {
    let tmp = tempfile::tempdir().unwrap();
    let store = ConfigStore::new(tmp.path().join("state"));
    fs::create_dir_all(store.state_dir()).unwrap();
    (tmp, store)
}

fn valid_config(tmp: &Path) -> StreamingConfig {
    let mut config = StreamingConfig::with_state_dir(&tmp.join("state"));
    config.input_dir = tmp.join("in");
    config.output_dir = tmp.join("out");
    config.scratch_dir = tmp.join("scratch");
    config
}

#[test]
fn defaults_match_the_original_pipeline() {
    let config = StreamingConfig::default();
    assert_eq!(config.expected_subbands, 16);
    assert_eq!(config.chunk_duration, 5.0);
    assert_eq!(config.poll_interval, 5.0);
    assert_eq!(config.worker_poll_interval, 5.0);
    assert_eq!(config.max_workers, 4);
    assert_eq!(config.monitor_interval, 60.0);
    assert_eq!(config.tmpfs_path, PathBuf::from("/dev/shm"));
    assert_eq!(config.queue_db, PathBuf::from("state/ingest.sqlite3"));
    assert_eq!(config.log_level, "INFO");
    assert_eq!(config.group_tolerance_s, 60.0);
}

#[test]
fn patch_reports_every_problem_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let base = valid_config(tmp.path());
    let patch = json!({
        "max_workers": 0,
        "log_level": "LOUD",
        "poll_interval": "fast",
        "bogus": 1,
    });
    let errors = base.apply_patch(patch.as_object().unwrap()).unwrap_err();
    let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
    // Type and unknown-key errors are found first; range errors need a typed config.
    assert!(fields.contains(&"poll_interval"), "{errors}");
    assert!(fields.contains(&"bogus"), "{errors}");

    let patch = json!({"max_workers": 0, "log_level": "LOUD", "chunk_duration": -1.0});
    let errors = base.apply_patch(patch.as_object().unwrap()).unwrap_err();
    let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
    assert!(fields.contains(&"max_workers"), "{errors}");
    assert!(fields.contains(&"log_level"), "{errors}");
    assert!(fields.contains(&"chunk_duration"), "{errors}");
}

#[test]
fn patch_leaves_the_original_unchanged_and_normalises_log_level() {
    let tmp = tempfile::tempdir().unwrap();
    let base = valid_config(tmp.path());
    let patched = base
        .apply_patch(
            json!({"max_workers": 8, "log_level": "debug"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(patched.max_workers, 8);
    assert_eq!(patched.log_level, "DEBUG");
    assert_eq!(base.max_workers, 4);
    assert_eq!(base.diff(&patched).len(), 2);
}

#[test]
fn uncreatable_directories_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = valid_config(tmp.path());
    let file = tmp.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    config.output_dir = file.join("sub");
    config.input_dir = file.clone();
    let errors = config.validate().unwrap_err();
    let fields: Vec<&str> = errors.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, vec!["input_dir", "output_dir"], "{errors}");
}

#[test]
fn tolerance_must_be_shorter_than_a_group() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = valid_config(tmp.path());
    config.group_tolerance_s = 400.0;
    let errors = config.validate().unwrap_err();
    assert_eq!(errors.errors[0].field, "group_tolerance_s");
}

#[test]
fn command_converter_placeholders_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = valid_config(tmp.path());
    config.converter = ConverterConfig::Command {
        argv: vec!["convert".into(), "{files}".into(), "{nonsense}".into()],
        env: BTreeMap::new(),
    };
    let errors = config.validate().unwrap_err();
    assert!(errors.errors[0].message.contains("{nonsense}"), "{errors}");
}

fn fields_of(errors: &ValidationErrors) -> Vec<&str> {
    errors.errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn control_characters_are_refused_in_every_string_field() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = valid_config(tmp.path());
    config.input_dir = tmp.path().join("in\u{0}x");
    config.output_dir = tmp.path().join("out\nx");
    config.scratch_dir = tmp.path().join("s\u{9b}x");
    config.tmpfs_path = PathBuf::from("/dev/shm\u{7f}");
    config.log_level = "INFO\r".into();
    config.converter = ConverterConfig::Command {
        argv: vec!["/bin/true".into(), "a\u{1b}b".into()],
        env: BTreeMap::from([("K\tX".to_string(), "v".to_string())]),
    };
    let errors = config.validate().unwrap_err();
    let fields = fields_of(&errors);
    for field in [
        "input_dir",
        "output_dir",
        "scratch_dir",
        "tmpfs_path",
        "log_level",
        "converter.argv",
        "converter.env",
    ] {
        assert!(fields.contains(&field), "{field} not refused: {errors}");
    }
    // Refused before being looked up: nothing was created.
    assert!(!tmp.path().join("out\nx").exists());
}

#[test]
fn databases_must_be_sqlite_files_or_creatable() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = valid_config(tmp.path());
    fs::create_dir_all(tmp.path().join("state")).unwrap();
    let text = tmp.path().join("notes.txt");
    fs::write(&text, "not a database, but longer than sixteen bytes").unwrap();
    let short = tmp.path().join("short");
    fs::write(&short, "SQLite").unwrap();
    let fifo = tmp.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for bad in [&text, &short, &fifo] {
        config.queue_db = bad.clone();
        let errors = config.validate().unwrap_err();
        assert_eq!(fields_of(&errors), vec!["queue_db"], "{}", bad.display());
    }
    let mut sqlite = SQLITE_HEADER.to_vec();
    sqlite.resize(4096, 0);
    let real = tmp.path().join("real.sqlite3");
    fs::write(&real, &sqlite).unwrap();
    let empty = tmp.path().join("empty.sqlite3");
    fs::write(&empty, b"").unwrap();
    for good in [&real, &empty, &tmp.path().join("new.sqlite3")] {
        config.queue_db = good.clone();
        config.validate().unwrap();
    }
    config.registry_db = text.clone();
    let errors = config.validate().unwrap_err();
    assert_eq!(fields_of(&errors), vec!["registry_db"]);
}

#[test]
fn unknown_converter_keys_are_reported_with_their_path() {
    let tmp = tempfile::tempdir().unwrap();
    let base = valid_config(tmp.path());
    let patch = json!({"converter": {"kind": "builtin", "argv": ["x"], "bogus": 1}});
    let errors = base.apply_patch(patch.as_object().unwrap()).unwrap_err();
    assert_eq!(
        fields_of(&errors),
        vec!["converter.argv", "converter.bogus"],
        "{errors}"
    );
    let patch = json!({"converter": {"kind": "command", "argv": ["/bin/true"], "envv": {}}});
    let errors = base.apply_patch(patch.as_object().unwrap()).unwrap_err();
    assert_eq!(fields_of(&errors), vec!["converter.envv"], "{errors}");
    let patch = json!({"converter": {"kind": "command", "argv": ["/bin/true"], "env": {}}});
    base.apply_patch(patch.as_object().unwrap()).unwrap();
}

#[test]
fn assignments_parse_typed_values() {
    let tmp = tempfile::tempdir().unwrap();
    let base = valid_config(tmp.path());
    let updated = base
        .apply_assignments(&[
            "max_workers=2".into(),
            "stage_to_tmpfs=true".into(),
            "log_level=WARNING".into(),
            "converter.kind=command".into(),
            "converter.argv=[\"/bin/true\", \"{files}\"]".into(),
        ])
        .unwrap();
    assert_eq!(updated.max_workers, 2);
    assert!(updated.stage_to_tmpfs);
    assert_eq!(updated.log_level, "WARNING");
    assert!(matches!(updated.converter, ConverterConfig::Command { .. }));
    assert!(base.apply_assignments(&["max_workers".into()]).is_err());
}

#[test]
fn save_and_load_round_trip() {
    let (tmp, store) = store_with_dirs();
    let mut config = valid_config(tmp.path());
    config.max_workers = 3;
    store.save(&config).unwrap();
    let (loaded, source) = store.load().unwrap();
    assert_eq!(source, ConfigSource::Toml);
    assert_eq!(loaded, config);
    assert_eq!(loaded.etag(), config.etag());
    // No temp files left behind.
    let leftovers: Vec<_> = fs::read_dir(store.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn invalid_save_changes_nothing_on_disk() {
    let (tmp, store) = store_with_dirs();
    let config = valid_config(tmp.path());
    store.save(&config).unwrap();
    let before = fs::read(store.path()).unwrap();
    let mut bad = config.clone();
    bad.max_workers = 0;
    assert!(store.save(&bad).is_err());
    assert_eq!(fs::read(store.path()).unwrap(), before);
}

#[test]
fn toml_errors_name_the_file_and_fields() {
    let (_tmp, store) = store_with_dirs();
    fs::write(store.path(), "max_workers = \"many\"\nunknown_key = 1\n").unwrap();
    let err = store.load().unwrap_err();
    let errors = err.validation_errors().unwrap();
    assert_eq!(errors.errors.len(), 2, "{err}");
    fs::write(store.path(), "max_workers = [").unwrap();
    assert!(matches!(
        store.load().unwrap_err(),
        ConfigError::Parse { .. }
    ));
}

#[test]
fn relative_paths_are_relative_to_the_state_dir() {
    let (_tmp, store) = store_with_dirs();
    fs::write(store.path(), "queue_db = \"q.sqlite3\"\n").unwrap();
    let (config, _) = store.load().unwrap();
    assert_eq!(config.queue_db, store.state_dir().join("q.sqlite3"));
}

#[test]
fn legacy_json_is_imported_once() {
    let (tmp, store) = store_with_dirs();
    let json = json!({
        "input_dir": tmp.path().join("in"),
        "output_dir": tmp.path().join("out"),
        "queue_db": "state/ingest.sqlite3",
        "registry_db": "state/cal_registry.sqlite3",
        "scratch_dir": tmp.path().join("scratch"),
        "expected_subbands": 16,
        "chunk_duration": 5.0,
        "log_level": "INFO",
        "use_subprocess": true,
        "monitoring": true,
        "monitor_interval": 60,
        "poll_interval": 5,
        "worker_poll_interval": 5,
        "max_workers": 4,
        "stage_to_tmpfs": false,
        "tmpfs_path": "/dev/shm",
        "something_else": "ignored"
    });
    fs::write(store.legacy_json_path(), json.to_string()).unwrap();
    let (config, source) = store.load_or_init().unwrap();
    assert_eq!(source, ConfigSource::ImportedJson);
    // "state/ingest.sqlite3" was relative to the pipeline checkout (the state dir's parent).
    assert_eq!(config.queue_db, tmp.path().join("state/ingest.sqlite3"));
    assert_eq!(config.monitor_interval, 60.0);
    assert!(store.path().exists());
    let (again, source) = store.load().unwrap();
    assert_eq!(source, ConfigSource::Toml);
    assert_eq!(again, config);
}

#[test]
fn retention_and_slurm_settings_round_trip_through_toml_and_assignments() {
    let tmp = tempfile::tempdir().unwrap();
    let config = valid_config(tmp.path());
    let text = config.to_toml().unwrap();
    assert!(
        !text.contains("archive_dir"),
        "an unset option is left out:\n{text}"
    );
    let store = ConfigStore::new(tmp.path());
    assert_eq!(
        store.parse_toml(Path::new("x.toml"), &text).unwrap(),
        config
    );

    let archive = tmp.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    let changed = config
        .apply_assignments(&[
            format!("archive_dir={}", archive.display()),
            "retain_output_days=30".into(),
            "executor=slurm".into(),
            "slurm.partition=compute".into(),
            "slurm.max_jobs=4".into(),
        ])
        .unwrap();
    assert_eq!(changed.archive_dir.as_deref(), Some(archive.as_path()));
    assert_eq!(changed.retain_output_days, Some(30.0));
    assert_eq!(changed.executor, ExecutorKind::Slurm);
    assert_eq!(changed.slurm.partition, "compute");
    assert_eq!(changed.slurm.max_jobs, 4);
    assert_eq!(
        changed.slurm.cpus_per_task, 1,
        "untouched keys keep their values"
    );
    let text = changed.to_toml().unwrap();
    assert!(text.contains("[slurm]"), "{text}");
    assert_eq!(
        store.parse_toml(Path::new("x.toml"), &text).unwrap(),
        changed
    );

    let cleared = changed
        .apply_assignments(&["archive_dir=".into(), "retain_output_days=".into()])
        .unwrap();
    assert_eq!(cleared.archive_dir, None);
    assert_eq!(cleared.retain_output_days, None);
}

#[test]
fn retention_and_slurm_problems_are_reported_per_field() {
    let tmp = tempfile::tempdir().unwrap();
    let config = valid_config(tmp.path());
    let err = config
        .apply_assignments(&[
            "retain_input_hours=-1".into(),
            "min_free_gb=nan".into(),
            "executor=kubernetes".into(),
            "slurm.partiton=x".into(),
            "slurm.time_limit=1h".into(),
            "slurm.max_jobs=0".into(),
        ])
        .unwrap_err();
    let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
    // Type and name problems come first; ranges are judged once every value parses.
    for expected in ["executor", "min_free_gb", "slurm.partiton"] {
        assert!(
            fields.contains(&expected),
            "{expected} missing from {fields:?}"
        );
    }
    let err = config
        .apply_assignments(&[
            "retain_input_hours=-1".into(),
            "slurm.time_limit=1h".into(),
            "slurm.max_jobs=0".into(),
        ])
        .unwrap_err();
    let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["retain_input_hours", "slurm.time_limit", "slurm.max_jobs"]
    );
}
