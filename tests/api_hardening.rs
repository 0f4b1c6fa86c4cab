//! Issue 10, findings 7 and 10: the real `contimg-api` binary against clients that
//! never finish a request, a flood of slow connections, and hostile token files.
//! Loopback only; every loop is bounded.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::api::{ApiDaemon, DaemonOptions, TOKEN, process_backend_args};
use common::worker::WorkerEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header-read (and idle keep-alive) timeout and the request-body deadline the
/// daemon promises.
const HEADER_READ_TIMEOUT: Duration = contimg::api::connections::HEADER_READ_TIMEOUT;
const BODY_DEADLINE: Duration = contimg::api::connections::REQUEST_BODY_DEADLINE;
/// Scheduling slack on a shared 2-core machine.
const SLACK: Duration = Duration::from_secs(10);

fn port_of(daemon: &ApiDaemon) -> u16 {
    daemon
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in base URL")
}

/// Reads (and discards) until the server closes the connection; returns how long
/// that took, or None if it was still open after `limit`.
async fn time_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// Opens a connection, sends `prefix` and then nothing more.
async fn stalled_connection(port: u16, prefix: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    if !prefix.is_empty() {
        stream.write_all(prefix.as_bytes()).await.expect("send");
    }
    stream
}

#[tokio::test]
async fn idle_and_half_sent_requests_are_closed_within_the_documented_timeouts() {
    let daemon = ApiDaemon::start_process(DaemonOptions::default()).await;
    let port = port_of(&daemon);
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let cases: Vec<(&str, String, Duration)> = vec![
        ("idle connection", String::new(), HEADER_READ_TIMEOUT),
        (
            "partial request line",
            "GET /api/streaming/sta".to_string(),
            HEADER_READ_TIMEOUT,
        ),
        (
            "Content-Length 100 with 1 byte sent",
            format!(
                "POST /api/streaming/config HTTP/1.1\r\nHost: x\r\n{auth}\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
            ),
            BODY_DEADLINE,
        ),
        (
            "GET with Content-Length 100 and 1 byte sent",
            "GET /api/streaming/status HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
                .to_string(),
            BODY_DEADLINE,
        ),
        (
            "chunked body with no end",
            format!(
                "POST /api/streaming/config HTTP/1.1\r\nHost: x\r\n{auth}\
                 Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{{\r\n"
            ),
            BODY_DEADLINE,
        ),
    ];
    let runs = cases.iter().map(|(name, prefix, timeout)| async move {
        let mut stream = stalled_connection(port, prefix).await;
        let limit = *timeout + SLACK;
        (*name, limit, time_until_closed(&mut stream, limit).await)
    });
    let results = futures_util::future::join_all(runs).await;
    let still_open: Vec<String> = results
        .iter()
        .filter(|(_, _, closed)| closed.is_none())
        .map(|(name, limit, _)| format!("{name} (open after {limit:?})"))
        .collect();
    for (name, _, closed) in &results {
        eprintln!("{name}: closed after {closed:?}");
    }
    assert!(
        still_open.is_empty(),
        "the server kept these connections open: {still_open:?}\n{}",
        daemon.log()
    );
}

/// `LimitNOFILE=` of the shipped API unit; systemd's default soft limit (1024)
/// when the unit sets none.
fn unit_nofile_limit() -> u64 {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/contimg-api.service");
    let text = std::fs::read_to_string(&unit).expect("read the API unit");
    text.lines()
        .find_map(|line| line.trim().strip_prefix("LimitNOFILE="))
        .map(|value| {
            let soft = value.split(':').next().unwrap_or(value);
            soft.trim().parse().expect("numeric LimitNOFILE")
        })
        .unwrap_or(1024)
}

fn own_hard_nofile() -> u64 {
    let (_soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    hard
}

/// Raises this test process's soft RLIMIT_NOFILE so it can hold `wanted` sockets.
fn raise_own_nofile(wanted: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft >= wanted {
        return;
    }
    assert!(
        hard >= wanted,
        "this test needs RLIMIT_NOFILE >= {wanted}; the hard limit is {hard}"
    );
    setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).unwrap();
}

#[tokio::test]
async fn two_thousand_slow_connections_do_not_starve_normal_requests() {
    const SLOW: usize = 2000;
    const NORMAL: usize = 6;
    raise_own_nofile(SLOW as u64 + 1024);
    // The daemon gets the file limit its systemd unit would give it (capped by
    // this machine's hard limit, which an unprivileged container cannot raise).
    let daemon_nofile = unit_nofile_limit().min(own_hard_nofile());
    let own_hard = own_hard_nofile();
    let configure = move |command: &mut Command| {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: daemon_nofile,
                    rlim_max: own_hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    };
    let env = WorkerEnv::new();
    env.write_config("");
    let daemon = ApiDaemon::start_configured(
        env,
        &DaemonOptions::default(),
        &process_backend_args(),
        &configure,
    )
    .await;
    let port = port_of(&daemon);

    // Slowloris: each connection sends part of a header and then goes quiet.
    let connects = (0..SLOW).map(|i| async move {
        let attempt = tokio::time::timeout(Duration::from_secs(5), async {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            let partial = format!("GET /api/streaming/status HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ");
            stream.write_all(partial.as_bytes()).await.ok()?;
            Some(stream)
        });
        attempt.await.ok().flatten()
    });
    let mut slow: Vec<TcpStream> = futures_util::future::join_all(connects)
        .await
        .into_iter()
        .flatten()
        .collect();
    eprintln!(
        "{} of {SLOW} slow connections open (daemon RLIMIT_NOFILE {daemon_nofile})",
        slow.len()
    );

    // Normal requests, each on a new connection, while the slow ones are open.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(8))
        .build()
        .expect("client");
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for _ in 0..NORMAL {
        let outcome = client
            .get(daemon.url("/api/streaming/status"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|err| err.to_string());
        outcomes.push(outcome);
    }
    eprintln!(
        "{NORMAL} normal requests took {:?}: {outcomes:?}",
        started.elapsed()
    );
    let answered = outcomes.iter().filter(|o| **o == Ok(200)).count();

    // The slow connections are closed by the header-read timeout, not kept forever.
    let limit = HEADER_READ_TIMEOUT + SLACK;
    let closes = slow
        .iter_mut()
        .map(|stream| time_until_closed(stream, limit));
    let still_open = futures_util::future::join_all(closes)
        .await
        .iter()
        .filter(|closed| closed.is_none())
        .count();
    let log = daemon.log();
    assert_eq!(
        answered,
        NORMAL,
        "normal requests during the flood: {outcomes:?}\n{}",
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(
        still_open, 0,
        "{still_open} slow connections still open after {limit:?}"
    );
}

/// Replaces the daemon's token file with `content` at `mode`.
fn write_token_with_mode(path: &Path, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    remove_token_path(path);
    std::fs::write(path, content).expect("write token");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn remove_token_path(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir(path).expect("rmdir"),
        Ok(_) => std::fs::remove_file(path).expect("rm"),
        Err(_) => {}
    }
}

/// POSTs a harmless mutation (`stop` of a stopped worker) with `token`.
async fn mutation_status(daemon: &ApiDaemon, token: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    match client
        .post(daemon.url("/api/streaming/stop"))
        .bearer_auth(token)
        .send()
        .await
    {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
        Err(err) => (0, format!("no answer: {err}")),
    }
}

#[tokio::test]
async fn unsafe_token_files_refuse_mutations_and_say_why() {
    // Start-up with a world-readable token: a warning in the log.
    let env = WorkerEnv::new();
    env.write_config("");
    let token_path = env.state_dir.join("api.token");
    write_token_with_mode(&token_path, &format!("{TOKEN}\n"), 0o644);
    let options = DaemonOptions {
        write_token: false,
        ..DaemonOptions::default()
    };
    let daemon = ApiDaemon::start_with(env, &options, &process_backend_args()).await;
    let log = daemon.log();
    assert!(
        log.contains("WARN") && log.contains("world-readable"),
        "no start-up warning about the world-readable token:\n{log}"
    );

    let long_token = "0123456789abcdef0123";
    let cases: [(&str, &str, u32, &str); 5] = [
        ("world-readable", long_token, 0o644, "world-readable"),
        ("world-writable", long_token, 0o602, "world-writable"),
        ("group-writable", long_token, 0o620, "group-writable"),
        ("1-byte token", "x", 0o600, "at least 16"),
        ("15-byte token", "0123456789abcde", 0o600, "at least 16"),
    ];
    let mut wrong = Vec::new();
    for (name, token, mode, reason) in cases {
        write_token_with_mode(&token_path, &format!("{token}\n"), mode);
        let (status, body) = mutation_status(&daemon, token).await;
        if status != 403 || !body.contains(reason) {
            wrong.push(format!("{name}: {status} {body}"));
        }
    }
    // A directory at the token path.
    remove_token_path(&token_path);
    std::fs::create_dir(&token_path).expect("mkdir");
    let (status, body) = mutation_status(&daemon, long_token).await;
    if status != 403 || !body.contains("not a regular file") {
        wrong.push(format!("directory: {status} {body}"));
    }
    // A symlink to a good token file: not followed.
    remove_token_path(&token_path);
    let target = daemon.env.root.path().join("real.token");
    write_token_with_mode(&target, &format!("{long_token}\n"), 0o600);
    std::os::unix::fs::symlink(&target, &token_path).expect("symlink");
    let (status, body) = mutation_status(&daemon, long_token).await;
    if status != 403 || !body.contains("symbolic link") {
        wrong.push(format!("symlink: {status} {body}"));
    }
    // The good case still works: 0600, 20 bytes.
    write_token_with_mode(&token_path, &format!("{long_token}\n"), 0o600);
    let (status, body) = mutation_status(&daemon, long_token).await;
    if status != 200 {
        wrong.push(format!("good 0600 token: {status} {body}"));
    }
    // 0640: group-readable is fine (packaging uses root:contimg 0640).
    write_token_with_mode(&token_path, &format!("{long_token}\n"), 0o640);
    let (status, body) = mutation_status(&daemon, long_token).await;
    if status != 200 {
        wrong.push(format!("good 0640 token: {status} {body}"));
    }
    assert!(wrong.is_empty(), "wrong answers: {wrong:#?}");
}

#[tokio::test]
async fn a_fifo_at_the_token_path_neither_hangs_requests_nor_sigterm() {
    // The FIFO is there from the start: the start-up check must not block on it.
    let env = WorkerEnv::new();
    env.write_config("");
    let token_path = env.state_dir.join("api.token");
    nix::unistd::mkfifo(&token_path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .expect("mkfifo");
    let options = DaemonOptions {
        write_token: false,
        ..DaemonOptions::default()
    };
    let daemon = ApiDaemon::start_with(env, &options, &process_backend_args()).await;
    assert!(
        daemon.log().contains("FIFO"),
        "no start-up warning about the FIFO:\n{}",
        daemon.log()
    );
    let started = Instant::now();
    let (status, body) = mutation_status(&daemon, TOKEN).await;
    eprintln!("FIFO token: {status} after {:?}", started.elapsed());
    // Reads that need no token keep working too.
    let reads = daemon
        .client
        .get(daemon.url("/api/streaming/status"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16());
    let pid = daemon.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    let exited = loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie_or_gone = state.is_empty()
            || state
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if zombie_or_gone {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status == 403 && body.contains("FIFO"),
        "FIFO token: {status} {body}"
    );
    assert_eq!(reads.ok(), Some(200), "GET status with a FIFO token file");
    assert!(
        exited,
        "the daemon ignored SIGTERM for 15 s\n{}",
        daemon.log()
    );
}

/// A daemon on `env`'s state dir started by a test's own command line (not
/// through `ApiDaemon`), answering on `port`; killed, with its worker, on drop.
struct RawDaemon {
    child: std::process::Child,
    port: u16,
    log_path: std::path::PathBuf,
    state_dir: std::path::PathBuf,
}

impl RawDaemon {
    /// Spawns `command` with the daemon's flags for `env` (process backend,
    /// `--listen listen`) and waits until `port` answers.
    async fn start(mut command: Command, env: &WorkerEnv, listen: &str, port: u16) -> Self {
        common::api::write_token_file(&env.state_dir.join("api.token"), &format!("{TOKEN}\n"));
        let log_path = env.root.path().join("api.log");
        let log = std::fs::File::create(&log_path).expect("log");
        let child = command
            .arg("--state-dir")
            .arg(&env.state_dir)
            .arg("--listen")
            .arg(listen)
            .args(process_backend_args())
            .env_remove("NOTIFY_SOCKET")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn the daemon");
        let daemon = Self {
            child,
            port,
            log_path,
            state_dir: env.state_dir.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while daemon
            .get("/api/streaming/status")
            .await
            .map(|r| r.status().as_u16())
            != Some(200)
        {
            assert!(
                Instant::now() < deadline,
                "no answer on port {port}:\n{}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        daemon
    }

    /// `systemd-socket-activate` (systemd's own tool) passes the listening socket
    /// the way `contimg-api.socket` does: LISTEN_FDS=1, LISTEN_PID, fd 3.
    async fn socket_activated(env: &WorkerEnv) -> Self {
        let port = common::api::free_port();
        let mut command = Command::new("systemd-socket-activate");
        command
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .arg(common::api::api_bin());
        // `--listen` is ignored under socket activation: nothing listens there.
        let daemon = Self::start(command, env, "127.0.0.1:1", port).await;
        assert!(
            daemon.log().contains("LISTEN_FDS"),
            "the daemon did not use the passed socket:\n{}",
            daemon.log()
        );
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Option<reqwest::Response> {
        client()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .ok()
    }

    async fn post(&self, path: &str) -> Option<reqwest::Response> {
        client()
            .post(format!("http://127.0.0.1:{}{path}", self.port))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

impl Drop for RawDaemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The process backend's worker outlives the daemon by design.
        for pid in common::api::worker_pids(&self.state_dir) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[tokio::test]
async fn socket_activated_daemon_serves_the_passed_socket_with_the_same_limits() {
    let env = WorkerEnv::new();
    env.write_config("");
    let daemon = RawDaemon::socket_activated(&env).await;
    let mut idle = stalled_connection(daemon.port, "").await;
    let closed = time_until_closed(&mut idle, HEADER_READ_TIMEOUT + SLACK).await;
    eprintln!("idle connection on the passed socket closed after {closed:?}");
    assert!(
        closed.is_some(),
        "an idle connection on the passed socket stayed open"
    );
    drop(daemon);
    drop(env);
}

/// The inode of the socket listening on 127.0.0.1:`port` (`/proc/net/tcp`).
fn listening_socket_inode(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local_address is field 1, st (0A = LISTEN) field 3, inode field 9.
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
            .then(|| fields.get(9).map(|inode| inode.to_string()))
            .flatten()
    })
}

async fn wait_for_worker(daemon: &RawDaemon) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(pid) = common::api::worker_pids(&daemon.state_dir).first() {
            return *pid;
        }
        assert!(
            Instant::now() < deadline,
            "no worker process after start:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The activation socket and LISTEN_* belong to contimg-api alone: the worker the
/// process backend spawns must not hold the API's port open (it would keep
/// accepting nothing on it after the API stops) nor see LISTEN_PID/LISTEN_FDS.
/// Failed before the sd-notify switch: the hand-rolled `from_raw_fd(3)` left the
/// fd inheritable and the variables set.
#[tokio::test]
async fn the_worker_inherits_neither_the_activation_socket_nor_listen_variables() {
    let env = WorkerEnv::new();
    env.write_config("");
    let daemon = RawDaemon::socket_activated(&env).await;
    let inode = listening_socket_inode(daemon.port).expect("the passed socket listens");
    let started = daemon
        .post("/api/streaming/start")
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(started, Some(200), "{}", daemon.log());
    let worker = wait_for_worker(&daemon).await;

    let environ = std::fs::read(format!("/proc/{worker}/environ")).expect("worker environ");
    let listen_vars: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|var| String::from_utf8_lossy(var).into_owned())
        .filter(|var| var.starts_with("LISTEN_"))
        .collect();
    assert!(
        listen_vars.is_empty(),
        "the worker inherited {listen_vars:?}"
    );
    let socket = format!("socket:[{inode}]");
    let inherited: Vec<String> = std::fs::read_dir(format!("/proc/{worker}/fd"))
        .expect("worker fds")
        .flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| target.to_string_lossy() == socket)
        })
        .map(|fd| fd.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        inherited.is_empty(),
        "the worker holds the API's listening socket as fd {inherited:?}"
    );
    drop(daemon);
    drop(env);
}

/// LISTEN_FDS meant for another process (LISTEN_PID is not ours, e.g. inherited
/// from a parent that was socket-activated) is not an activation: the daemon
/// binds its own `--listen` address and leaves the fd alone. (The hand-rolled
/// code checked LISTEN_PID too; this pins that sd-notify's check is in force.)
#[tokio::test]
async fn listen_fds_for_another_pid_is_not_taken_as_the_activation_socket() {
    use std::os::fd::AsRawFd;
    let env = WorkerEnv::new();
    env.write_config("");
    let foreign = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let foreign_fd = foreign.as_raw_fd();
    let port = common::api::free_port();
    let mut command = Command::new(common::api::api_bin());
    // This test process is alive and is not the daemon.
    command
        .env("LISTEN_PID", std::process::id().to_string())
        .env("LISTEN_FDS", "1");
    // SAFETY: dup2 is async-signal-safe; it puts the foreign socket at fd 3 (the
    // first activation fd) without close-on-exec, as a service manager would.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(foreign_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let daemon = RawDaemon::start(command, &env, &format!("127.0.0.1:{port}"), port).await;
    assert!(
        !daemon.log().contains("LISTEN_FDS"),
        "the daemon took another process's socket:\n{}",
        daemon.log()
    );
    drop(daemon);
    drop(foreign);
    drop(env);
}
