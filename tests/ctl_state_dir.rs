//! Issue 14: which state dir `contimgctl` works on when `--state-dir` is not
//! given (`contimg_control::state_dir` has the rules), run as an admin would: the
//! real binary, from a directory that is not the checkout, without
//! `CONTIMG_STATE_DIR`; for the unit rule against a real, isolated systemd user
//! manager (ops/testenv/user-manager.sh, needs root, systemd and dbus).
//! The packaged default (dpkg) is exercised in the booted .deb of
//! ops/testenv/pkg-test.sh (section state-dir) and in the module's unit tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::systemd::{UserManager, WorkerUnit, worker_unit};
use common::worker::{WorkerEnv, stream_bin};

const CTL: &str = env!("CARGO_BIN_EXE_contimgctl");
const NO_BUS: &str = "unix:path=/nonexistent/contimg-test";

/// `contimgctl ARGS` in `cwd`, without `CONTIMG_STATE_DIR`; against `manager`,
/// or with no systemd manager reachable at all.
fn ctl_in(cwd: &Path, manager: Option<&UserManager>, args: &[&str]) -> Output {
    let mut command = Command::new(CTL);
    command.current_dir(cwd);
    match manager {
        Some(manager) => manager.apply_env(&mut command),
        None => {
            command
                .env("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
                .env("DBUS_SESSION_BUS_ADDRESS", NO_BUS)
                .env("NO_COLOR", "1")
                .env_remove("CONTIMG_STATE_DIR");
        }
    }
    command.args(args).output().expect("run contimgctl")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).expect("canonicalize")
}

/// A queue DB with the real schema (as the worker creates it).
fn create_queue_db(state_dir: &Path) {
    std::fs::create_dir_all(state_dir).expect("mkdir state");
    drop(contimg::queue::Queue::open(&state_dir.join("ingest.sqlite3")).expect("create queue DB"));
}

/// The packaged default (rule 4) comes before the checkout (rule 5): on a host
/// with the package installed this test could not see rule 5.
fn assert_package_not_installed() {
    assert!(
        !contimg::control::state_dir::package_installed(
            Path::new(contimg::control::state_dir::DPKG_STATUS),
            "contimg"
        ),
        "the contimg package is installed on this host: the packaged default wins over ./state"
    );
}

#[test]
fn a_checkout_uses_its_state_dir_and_no_other_directory_does() {
    assert_package_not_installed();
    let root = tempfile::tempdir().unwrap();
    let plain = root.path().join("plain");
    std::fs::create_dir_all(plain.join("state")).unwrap();
    create_queue_db(&plain.join("state"));

    // A directory with a ./state but no checkout: nothing is guessed.
    let output = ctl_in(&plain, None, &["queue"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("no state dir: pass --state-dir DIR or set CONTIMG_STATE_DIR"),
        "{stderr}"
    );
    assert!(stderr.contains("not a contimg checkout"), "{stderr}");
    assert!(
        stderr.contains("does not know contimg-stream.service") || stderr.contains("manager"),
        "{stderr}"
    );

    // The top of a contimg checkout: ./state.
    let checkout = root.path().join("contimg");
    std::fs::create_dir_all(checkout.join(".git")).unwrap();
    std::fs::create_dir_all(checkout.join("src")).unwrap();
    std::fs::write(
        checkout.join("Cargo.toml"),
        "[workspace]\nmembers = [\"src/core\"]\n\n[package]\nname = \"contimg\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    let missing = ctl_in(&checkout, None, &["queue"]);
    let (_, stderr) = text(&missing);
    let state = canonical(&checkout).join("state");
    let rule = format!(
        "./state of the contimg checkout {}",
        canonical(&checkout).display()
    );
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!(
            "contimgctl: state dir {} (from {rule}) does not exist",
            state.display()
        )
    );

    std::fs::create_dir_all(&state).unwrap();
    let no_db = ctl_in(&checkout, None, &["queue"]);
    let (_, stderr) = text(&no_db);
    assert_eq!(
        stderr.trim(),
        format!(
            "contimgctl: queue DB {}/ingest.sqlite3 does not exist (has the worker ever run?); \
             state dir {} (from {rule})",
            state.display(),
            state.display()
        )
    );

    create_queue_db(&state);
    let listed = ctl_in(&checkout, None, &["queue"]);
    let (stdout, stderr) = text(&listed);
    assert_eq!(listed.status.code(), Some(0), "{stdout}{stderr}");

    let status = ctl_in(&checkout, None, &["--backend", "process", "status"]);
    let (stdout, stderr) = text(&status);
    assert_eq!(
        status.status.code(),
        Some(3),
        "not running: {stdout}{stderr}"
    );
    assert!(
        stdout.contains(&format!("State dir: {} (from {rule})\n", state.display())),
        "{stdout}"
    );
    assert!(
        stdout.starts_with("○ direct process (PID file) - DSA-110 streaming worker\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Backend: direct process (PID file)"),
        "{stdout}"
    );

    let health = ctl_in(&checkout, None, &["--backend", "process", "health"]);
    let (stdout, _) = text(&health);
    assert!(
        stdout.starts_with("○ direct process (PID file) is unhealthy\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  state dir: {} (from {rule})\n", state.display())),
        "{stdout}"
    );

    // Paths shown are canonical: no `state/./ingest.sqlite3`.
    let shown = ctl_in(&checkout, None, &["--backend", "process", "config", "show"]);
    let (stdout, stderr) = text(&shown);
    assert_eq!(shown.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "queue_db = \"{}/ingest.sqlite3\"",
            state.display()
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("/./"), "{stdout}");

    // Below the top of the checkout it is not one (./state would be src/state).
    let below = ctl_in(&checkout.join("src"), None, &["queue"]);
    assert_eq!(below.status.code(), Some(2), "{:?}", text(&below));

    // The flag and the environment name their rule when the dir is missing.
    let flagged = ctl_in(&plain, None, &["--state-dir", "elsewhere/./x", "queue"]);
    assert_eq!(
        text(&flagged).1.trim(),
        format!(
            "contimgctl: state dir {}/elsewhere/x (from --state-dir) does not exist",
            canonical(&plain).display()
        )
    );
    let mut command = Command::new(CTL);
    command
        .current_dir(&checkout)
        .env("CONTIMG_STATE_DIR", root.path().join("gone"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
        .env("DBUS_SESSION_BUS_ADDRESS", NO_BUS)
        .arg("queue");
    let env_output = command.output().unwrap();
    assert_eq!(
        text(&env_output).1.trim(),
        format!(
            "contimgctl: state dir {}/gone (from CONTIMG_STATE_DIR) does not exist",
            canonical(root.path()).display()
        )
    );
}

#[test]
fn the_worker_units_own_state_dir_is_found_over_dbus() {
    let manager = UserManager::start();
    let env = WorkerEnv::new();
    env.write_config("");
    let log = env.root.path().join("worker.log");
    let unit = worker_unit(&WorkerUnit {
        worker_bin: &stream_bin(),
        state_dir: &env.state_dir,
        log_file: &log,
        watchdog_sec: "30s",
        restart_sec: "500ms",
        template: false,
    });
    manager.install_unit("contimg-stream.service", &unit);
    // An admin's shell: somewhere else, no CONTIMG_STATE_DIR, no flags.
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| ctl_in(elsewhere.path(), Some(&manager), args);

    let started = run(&["start"]);
    assert_eq!(started.status.code(), Some(0), "{:?}", text(&started));
    manager.wait_for("the queue DB", Duration::from_secs(20), || {
        env.queue_db().exists()
    });
    let state = canonical(&env.state_dir);

    let listed = run(&["queue"]);
    let (stdout, stderr) = text(&listed);
    assert_eq!(listed.status.code(), Some(0), "{stdout}{stderr}");

    let status = run(&["status"]);
    let (stdout, stderr) = text(&status);
    assert_eq!(status.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "State dir: {} (from ExecStart= --state-dir of contimg-stream.service on the user manager)\n",
            state.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("Backend: systemd user unit contimg-stream.service (chosen: "),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&run(&["--json", "status"]).stdout).expect("status --json");
    assert_eq!(json["state_dir"], state.display().to_string());
    assert_eq!(
        json["backend_description"],
        "systemd user unit contimg-stream.service"
    );

    // A unit that says it only through Environment=.
    let env_only: String = unit
        .lines()
        .map(|line| {
            if line.starts_with("ExecStart=") {
                format!("ExecStart={}\n", stream_bin().display())
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    manager.install_unit("contimg-envonly.service", &env_only);
    let status = run(&["--unit", "contimg-envonly", "status"]);
    let (stdout, _) = text(&status);
    assert!(
        stdout.contains(&format!(
            "State dir: {} (from Environment=CONTIMG_STATE_DIR of contimg-envonly.service on the user manager)\n",
            state.display()
        )),
        "{stdout}"
    );
    let stopped = run(&["stop"]);
    assert_eq!(stopped.status.code(), Some(0), "{:?}", text(&stopped));
}

#[test]
fn an_instance_finds_its_own_state_dir() {
    let manager = UserManager::start();
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("worker.log");
    manager.install_unit(
        "contimg-stream@.service",
        &worker_unit(&WorkerUnit {
            worker_bin: &stream_bin(),
            state_dir: &root.path().join("%i"),
            log_file: &log,
            watchdog_sec: "30s",
            restart_sec: "500ms",
            template: true,
        }),
    );
    create_queue_db(&root.path().join("lab"));
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| ctl_in(elsewhere.path(), Some(&manager), args);

    let listed = run(&["--instance", "lab", "queue"]);
    assert_eq!(listed.status.code(), Some(0), "{:?}", text(&listed));
    let status = run(&["--instance", "lab", "status"]);
    let (stdout, _) = text(&status);
    assert!(
        stdout.contains(&format!(
            "State dir: {} (from ExecStart= --state-dir of contimg-stream@lab.service on the user manager)\n",
            canonical(&root.path().join("lab")).display()
        )),
        "{stdout}"
    );

    // Another instance has its own (here: not created yet) dir.
    let other = run(&["--instance", "other", "queue"]);
    assert_eq!(
        text(&other).1.trim(),
        format!(
            "contimgctl: state dir {}/other (from ExecStart= --state-dir of \
             contimg-stream@other.service on the user manager) does not exist",
            canonical(root.path()).display()
        )
    );
}

/// Gap 2 of issue 14: a unit whose `CONTIMG_STATE_DIR` comes from an
/// `EnvironmentFile=`. systemd itself is the oracle for the precedence and the
/// file format: the same unit, started, writes the value it was given, and
/// `contimgctl` must name that directory.
#[test]
fn a_state_dir_from_an_environment_file_is_found_as_systemd_sets_it() {
    let manager = UserManager::start();
    let root = tempfile::tempdir().unwrap();
    let wanted = root.path().join("from file two");
    std::fs::create_dir_all(&wanted).unwrap();
    let first = root.path().join("first.env");
    std::fs::write(&first, "CONTIMG_STATE_DIR=/overridden/by/the/second/file\n").unwrap();
    let second = root.path().join("second.env");
    std::fs::write(
        &second,
        format!(
            "# the site's settings\n; another comment\n  HDF5_USE_FILE_LOCKING=FALSE\n\
             not an assignment\nCONTIMG_STATE_DIR = \"{}\"   \n",
            wanted.display()
        ),
    )
    .unwrap();
    let seen = root.path().join("seen");
    // Environment= names another dir: EnvironmentFile= must win (systemd.exec(5)).
    let unit = format!(
        "[Service]\nType=oneshot\nRemainAfterExit=yes\n\
         Environment=CONTIMG_STATE_DIR=/from/environment\n\
         EnvironmentFile=-{missing}\nEnvironmentFile={first}\nEnvironmentFile={second}\n\
         ExecStart=/bin/sh -c 'printf %%s \"$$CONTIMG_STATE_DIR\" > \"{seen}\"'\n",
        missing = root.path().join("absent.env").display(),
        first = first.display(),
        second = second.display(),
        seen = seen.display(),
    );
    manager.install_unit("contimg-envfile.service", &unit);
    let started = manager.systemctl(&["start", "contimg-envfile.service"]);
    assert!(started.status.success(), "{started:?}");
    let systemd_gave = std::fs::read_to_string(&seen).expect("the unit ran");
    assert_eq!(Path::new(&systemd_gave), wanted, "what systemd set");

    let elsewhere = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| ctl_in(elsewhere.path(), Some(&manager), args);
    let status = run(&["--unit", "contimg-envfile", "--json", "status"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout)
        .unwrap_or_else(|_| panic!("status --json: {:?}", text(&status)));
    assert_eq!(json["state_dir"], canonical(&wanted).display().to_string());
    assert_eq!(
        json["state_dir_rule"],
        format!(
            "EnvironmentFile={} CONTIMG_STATE_DIR of contimg-envfile.service on the user manager",
            second.display()
        )
    );

    // A file that cannot be read (here a directory: the tests run as root, who
    // reads any file) is named in the explanation, and Environment= is then only
    // what the unit says as far as this caller can tell.
    let unreadable = root.path().join("unreadable.env");
    std::fs::create_dir(&unreadable).unwrap();
    manager.install_unit(
        "contimg-unreadable.service",
        &format!(
            "[Service]\nType=oneshot\nEnvironment=CONTIMG_STATE_DIR={}\n\
             EnvironmentFile={}\nExecStart=/bin/true\n",
            root.path().join("env-dir").display(),
            unreadable.display()
        ),
    );
    let queue = run(&["--unit", "contimg-unreadable", "queue"]);
    let (stdout, stderr) = text(&queue);
    assert_eq!(queue.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stderr.trim(),
        format!(
            "contimgctl: state dir {root}/env-dir (from Environment=CONTIMG_STATE_DIR of \
             contimg-unreadable.service on the user manager; not read: EnvironmentFile={file}: \
             Is a directory (os error 21), which may set another dir) does not exist",
            root = canonical(root.path()).display(),
            file = unreadable.display()
        )
    );
}
