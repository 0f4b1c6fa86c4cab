//! Which state directory (config, queue DB, requests, PID file) `contimgctl`
//! works on, and why. The first rule that gives a directory wins:
//!
//! 1. `--state-dir DIR`;
//! 2. `CONTIMG_STATE_DIR` (not empty);
//! 3. the worker's own unit, read over D-Bus from the manager that knows it (the
//!    system manager first, then the user manager; only the user manager with
//!    `--user`, only the system one with `--backend systemd`; skipped with
//!    `--backend process|docker`): the unit's `ExecStart=`
//!    `--state-dir DIR` (what the worker itself obeys first), else its
//!    `ExecStart=` `--config FILE`'s directory, else `CONTIMG_STATE_DIR=DIR` from
//!    its `EnvironmentFile=`s or its `Environment=` (the files win, as in systemd).
//!    `--instance NAME` asks `contimg-stream@NAME.service`, whose `%i` systemd has
//!    already expanded, so an instance finds its own dir. The environment files
//!    are read with the caller's permissions; one that cannot be read is named in
//!    the rule, since it may set another dir;
//! 4. [`PACKAGED_STATE_DIR`] when dpkg's status database ([`DPKG_STATUS`]) records
//!    the package [`PACKAGE_NAME`] as `install ok installed`;
//! 5. `./state` when the current directory is a contimg checkout: it has a `.git`
//!    (directory, or file as in a worktree) and a `Cargo.toml` whose `[package]`
//!    is `name = "contimg"`.
//!
//! Nothing else: with no rule applying, [`discover`] says what it tried instead of
//! guessing (an unrelated `./state` of whatever directory the shell is in was the
//! old default). The chosen path is made absolute and canonical (symlinks
//! resolved when it exists), and every message about it names the rule.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use zbus::Connection;
use zbus::proxy::CacheProperties;
use zbus_systemd::systemd1::{ServiceProxy, UnitProxy};

use super::systemd::{ManagerScope, unit_object_path};
use super::{BackendChoice, ControlOptions};
use contimg_core::config::STATE_DIR_ENV;

/// The state directory of the packaged system unit (`StateDirectory=contimg`).
pub const PACKAGED_STATE_DIR: &str = "/var/lib/contimg";
/// The Debian package name (`[package.metadata.deb] name`).
pub const PACKAGE_NAME: &str = "contimg";
/// dpkg's status database: one stanza per package, with its `Status:` line.
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// How long rule 3 waits for a manager: a hung bus must not hang a cron job's
/// `contimgctl` (the manager normally answers within milliseconds).
const UNIT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Which setting of the worker's unit named the state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitSetting {
    /// `ExecStart=… --state-dir DIR`.
    ExecStartStateDir,
    /// `ExecStart=… --config FILE`: the worker's state dir is FILE's directory.
    ExecStartConfig,
    /// `Environment=CONTIMG_STATE_DIR=DIR`.
    Environment,
    /// `CONTIMG_STATE_DIR=DIR` in the unit's `EnvironmentFile=FILE`.
    EnvironmentFile(PathBuf),
}

impl std::fmt::Display for UnitSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitSetting::ExecStartStateDir => f.write_str("ExecStart= --state-dir"),
            UnitSetting::ExecStartConfig => f.write_str("the directory of ExecStart= --config"),
            UnitSetting::Environment => write!(f, "Environment={STATE_DIR_ENV}"),
            UnitSetting::EnvironmentFile(file) => {
                write!(f, "EnvironmentFile={} {STATE_DIR_ENV}", file.display())
            }
        }
    }
}

/// Rule 3's details: which setting of which unit on which manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRule {
    pub manager: ManagerScope,
    pub unit: String,
    pub setting: UnitSetting,
    /// The unit's environment files this process could not read (`FILE: why`),
    /// when the chosen setting depends on the environment.
    pub unread: Vec<String>,
}

/// The rule that chose the state directory (see the module docs for the order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDirRule {
    Flag,
    Environment,
    /// Boxed: it is the largest, and errors carry a rule.
    Unit(Box<UnitRule>),
    /// `state_dir` in a daemon's config file (contimg-api's `api.toml`).
    ConfigFile {
        path: PathBuf,
    },
    Packaged,
    Checkout {
        root: PathBuf,
    },
}

impl std::fmt::Display for StateDirRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateDirRule::Flag => f.write_str("--state-dir"),
            StateDirRule::Environment => write!(f, "{STATE_DIR_ENV}"),
            StateDirRule::Unit(rule) => {
                let UnitRule {
                    manager,
                    unit,
                    setting,
                    unread,
                } = &**rule;
                write!(f, "{setting} of {unit} on the {} manager", manager.as_str())?;
                if !unread.is_empty() {
                    write!(
                        f,
                        "; not read: EnvironmentFile={}, which may set another dir",
                        unread.join(", EnvironmentFile=")
                    )?;
                }
                Ok(())
            }
            StateDirRule::ConfigFile { path } => write!(f, "state_dir in {}", path.display()),
            StateDirRule::Packaged => write!(
                f,
                "the packaged default (dpkg: package {PACKAGE_NAME} is installed)"
            ),
            StateDirRule::Checkout { root } => {
                write!(f, "./state of the contimg checkout {}", root.display())
            }
        }
    }
}

/// A state directory and the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    pub path: PathBuf,
    pub rule: StateDirRule,
}

impl StateDir {
    fn new(path: PathBuf, rule: StateDirRule, cwd: Option<&Path>) -> Self {
        Self {
            path: canonical(&path, cwd),
            rule,
        }
    }

    /// `Ok` if the directory exists, else the error naming it and its rule.
    pub fn require_existing(&self) -> Result<&Path, StateDirError> {
        if self.path.is_dir() {
            Ok(&self.path)
        } else {
            Err(StateDirError::Missing {
                path: self.path.clone(),
                rule: self.rule.clone(),
            })
        }
    }
}

impl std::fmt::Display for StateDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (from {})", self.path.display(), self.rule)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StateDirError {
    #[error(
        "no state dir: pass --state-dir DIR or set {STATE_DIR_ENV} (looked at: {})",
        tried.join("; ")
    )]
    NotFound { tried: Vec<String> },
    #[error("state dir {} (from {rule}) does not exist", path.display())]
    Missing { path: PathBuf, rule: StateDirRule },
}

/// What [`discover`] looks at besides D-Bus; [`HostProbe::from_host`] reads the
/// real environment, tests point it elsewhere.
#[derive(Debug, Clone)]
pub struct HostProbe {
    /// The value of `CONTIMG_STATE_DIR`.
    pub env: Option<OsString>,
    pub dpkg_status: PathBuf,
    /// The current directory (`None` if it cannot be read).
    pub cwd: Option<PathBuf>,
}

impl HostProbe {
    pub fn from_host() -> Self {
        Self {
            env: std::env::var_os(STATE_DIR_ENV),
            dpkg_status: PathBuf::from(DPKG_STATUS),
            cwd: std::env::current_dir().ok(),
        }
    }
}

/// A setting given on purpose (a flag, a config file's key), tried before the
/// environment in the order given.
#[derive(Debug, Clone)]
pub struct ExplicitSetting<'a> {
    pub dir: Option<&'a Path>,
    pub rule: StateDirRule,
}

/// Finds the state directory by the rules in the module docs. `flag` is
/// `--state-dir`; `options` say which unit, manager and backend (rule 3).
pub async fn discover(
    flag: Option<&Path>,
    options: &ControlOptions,
    probe: &HostProbe,
) -> Result<StateDir, StateDirError> {
    let explicit = [ExplicitSetting {
        dir: flag,
        rule: StateDirRule::Flag,
    }];
    discover_after(&explicit, options, probe).await
}

/// [`discover`] with more than one explicit setting before the environment (the
/// API daemon: `--state-dir`, then `state_dir` in its `api.toml`).
pub async fn discover_after(
    explicit: &[ExplicitSetting<'_>],
    options: &ControlOptions,
    probe: &HostProbe,
) -> Result<StateDir, StateDirError> {
    let cwd = probe.cwd.as_deref();
    let mut tried = Vec::new();
    for setting in explicit {
        match setting.dir {
            Some(dir) => return Ok(StateDir::new(dir.into(), setting.rule.clone(), cwd)),
            None => tried.push(format!("{}: not given", setting.rule)),
        }
    }
    if let Some(dir) = probe.env.as_ref().filter(|value| !value.is_empty()) {
        return Ok(StateDir::new(dir.into(), StateDirRule::Environment, cwd));
    }
    tried.push(format!("{STATE_DIR_ENV}: not set"));
    match from_units(options, &mut tried).await {
        Some((dir, rule)) => return Ok(StateDir::new(dir, rule, cwd)),
        None => tracing::debug!(?tried, "no unit names a state dir"),
    }
    if package_installed(&probe.dpkg_status, PACKAGE_NAME) {
        return Ok(StateDir::new(
            PACKAGED_STATE_DIR.into(),
            StateDirRule::Packaged,
            cwd,
        ));
    }
    tried.push(format!(
        "package {PACKAGE_NAME}: not installed according to {}",
        probe.dpkg_status.display()
    ));
    match cwd {
        Some(dir) if is_checkout(dir) => {
            return Ok(StateDir::new(
                dir.join("state"),
                StateDirRule::Checkout {
                    root: canonical(dir, None),
                },
                cwd,
            ));
        }
        Some(dir) => tried.push(format!(
            "{}: not a contimg checkout (needs .git and a Cargo.toml of package contimg)",
            dir.display()
        )),
        None => tried.push("the current directory cannot be read".into()),
    }
    Err(StateDirError::NotFound { tried })
}

/// Rule 3: asks the managers that may run the worker what its unit says.
async fn from_units(
    options: &ControlOptions,
    tried: &mut Vec<String>,
) -> Option<(PathBuf, StateDirRule)> {
    let unit = options.unit_name();
    let scopes: &[ManagerScope] = match options.backend {
        BackendChoice::Process | BackendChoice::Docker => {
            tried.push(format!("units: not asked (--backend {})", options.backend));
            return None;
        }
        // The managers `detect` would pick the backend from, in its order.
        BackendChoice::Auto | BackendChoice::Systemd if options.user => &[ManagerScope::User],
        BackendChoice::Systemd => &[ManagerScope::System],
        BackendChoice::Auto => &[ManagerScope::System, ManagerScope::User],
    };
    for scope in scopes {
        let word = scope.as_str();
        let answer = tokio::time::timeout(UNIT_READ_TIMEOUT, read_unit(*scope, options, &unit))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {UNIT_READ_TIMEOUT:?}")));
        match answer {
            Ok(None) => tried.push(format!("the {word} manager does not know {unit}")),
            Ok(Some(settings)) => {
                // The manager that knows the unit is the one the backend uses too
                // (detect.rs): a unit there without a state dir ends rule 3.
                let unread = settings.unread_environment_files();
                return match settings.state_dir() {
                    Some((dir, setting)) => Some((
                        dir,
                        StateDirRule::Unit(Box::new(UnitRule {
                            manager: *scope,
                            unread: if settings.depends_on_environment(&setting) {
                                unread
                            } else {
                                Vec::new()
                            },
                            unit,
                            setting,
                        })),
                    )),
                    None => {
                        let not_read = if unread.is_empty() {
                            String::new()
                        } else {
                            format!("; not read: EnvironmentFile={}", unread.join(", "))
                        };
                        tried.push(format!(
                            "{unit} on the {word} manager names no state dir \
                             (no ExecStart= --state-dir/--config, no {STATE_DIR_ENV} in \
                             Environment= or EnvironmentFile={not_read})"
                        ));
                        None
                    }
                };
            }
            Err(err) => tried.push(format!("the {word} manager: {err}")),
        }
    }
    None
}

/// What a unit's `ExecStart=`, `Environment=`, `EnvironmentFile=` and
/// `WorkingDirectory=` say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitSettings {
    /// Each `ExecStart=` command line (`argv`, argv\[0\] included).
    pub exec_start: Vec<Vec<String>>,
    /// `NAME=value` assignments.
    pub environment: Vec<String>,
    /// The `EnvironmentFile=`s in their order, as this process read them.
    pub environment_files: Vec<EnvironmentFile>,
    pub working_directory: String,
}

/// One `EnvironmentFile=` of a unit and what reading it gave.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentFile {
    pub path: PathBuf,
    /// Its assignments in file order, or why it could not be read.
    pub assignments: Result<Vec<(String, String)>, String>,
}

impl EnvironmentFile {
    /// Reads `path` as systemd would for `EnvironmentFile=[-]path`; `None` for a
    /// missing optional (`-`) file, which systemd skips silently.
    pub fn read(path: &Path, optional: bool) -> Option<Self> {
        let assignments = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(|text| parse_environment_file(&text))
                .map_err(|_| "not UTF-8".to_string()),
            Err(err) if optional && err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => Err(err.to_string()),
        };
        Some(Self {
            path: path.to_path_buf(),
            assignments,
        })
    }
}

impl UnitSettings {
    /// The value of `name` in the environment systemd gives the unit's process,
    /// and where it came from. systemd.exec(5), EnvironmentFile=: "Settings from
    /// these files override settings made with Environment=. If the same variable
    /// is set twice from these files, the files will be read in the order they
    /// are specified and the later setting will override the earlier setting."
    /// So: the last file that sets it, else the last `Environment=` assignment.
    fn environment_value(&self, name: &str) -> Option<(String, UnitSetting)> {
        let from_files = self.environment_files.iter().rev().find_map(|file| {
            let assignments = file.assignments.as_ref().ok()?;
            let (_, value) = assignments.iter().rev().find(|(key, _)| key == name)?;
            Some((
                value.clone(),
                UnitSetting::EnvironmentFile(file.path.clone()),
            ))
        });
        from_files.or_else(|| {
            self.environment
                .iter()
                .rev()
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                .map(|value| (value.to_string(), UnitSetting::Environment))
        })
    }

    /// The environment files that could not be read, as `PATH: why`.
    pub fn unread_environment_files(&self) -> Vec<String> {
        self.environment_files
            .iter()
            .filter_map(|file| {
                let why = file.assignments.as_ref().err()?;
                Some(format!("{}: {why}", file.path.display()))
            })
            .collect()
    }

    /// Whether an unread environment file could change what `setting` gave: it
    /// came from the environment, or from an `ExecStart=` with `$VARIABLE`s.
    pub fn depends_on_environment(&self, setting: &UnitSetting) -> bool {
        match setting {
            UnitSetting::Environment | UnitSetting::EnvironmentFile(_) => true,
            UnitSetting::ExecStartStateDir | UnitSetting::ExecStartConfig => self
                .exec_start
                .iter()
                .flatten()
                .any(|arg| arg.contains('$')),
        }
    }

    /// The worker's state dir as the worker would pick it from this unit: its
    /// `--state-dir` first, then `--config`'s directory, then the environment
    /// (`contimg-stream`'s own order). `$NAME`/`${NAME}` in an argument are
    /// expanded from the unit's environment, as systemd does when it starts it.
    pub fn state_dir(&self) -> Option<(PathBuf, UnitSetting)> {
        let env_value = |name: &str| self.environment_value(name).map(|(value, _)| value);
        let from_argv = self.exec_start.iter().find_map(|argv| {
            let args: Vec<String> = argv
                .iter()
                .skip(1)
                .map(|arg| expand_variables(arg, &env_value))
                .collect();
            if let Some(dir) = option_value(&args, "--state-dir") {
                return Some((PathBuf::from(dir), UnitSetting::ExecStartStateDir));
            }
            option_value(&args, "--config").map(|file| {
                let dir = Path::new(&file)
                    .parent()
                    .filter(|parent| !parent.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                (dir, UnitSetting::ExecStartConfig)
            })
        });
        let (dir, setting) = from_argv.or_else(|| {
            self.environment_value(STATE_DIR_ENV)
                .filter(|(value, _)| !value.is_empty())
                .map(|(dir, setting)| (PathBuf::from(dir), setting))
        })?;
        if dir.is_absolute() {
            return Some((dir, setting));
        }
        // A relative path is relative to the unit's working directory; "" or "~"
        // (the manager's default) is not one this process can know.
        let working = Path::new(&self.working_directory);
        working.is_absolute().then(|| (working.join(dir), setting))
    }
}

/// The assignments of an environment file in systemd's format (systemd.exec(5),
/// EnvironmentFile=; the state machine of systemd's `parse_env_file_internal`):
/// `KEY=VALUE` lines; empty lines, lines without `=` and lines starting with `#`
/// or `;` are ignored; leading and trailing whitespace is discarded; an unquoted
/// value keeps interior whitespace and takes `\X` as X (`\` + newline continues
/// the line); a value may start with `'…'` (verbatim, may span lines) or `"…"`
/// (`\"`, `\\`, `\``, `\$` escaped, `\` + newline continues, other backslashes
/// kept). Names that are not valid variable names are dropped, as systemd does.
pub fn parse_environment_file(text: &str) -> Vec<(String, String)> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        SingleQuoted,
        DoubleQuoted,
        DoubleQuotedEscape,
        Comment,
        CommentEscape,
    }
    const NEWLINE: &[char] = &['\n', '\r'];
    const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];
    let mut out = Vec::new();
    let mut state = State::PreKey;
    let mut key = String::new();
    let mut value = String::new();
    // Byte length of `value` before trailing unquoted whitespace, if any.
    let mut value_before_whitespace: Option<usize> = None;
    let mut push = |key: &mut String, value: &mut String, trim_at: Option<usize>| {
        if let Some(at) = trim_at {
            value.truncate(at);
        }
        let name = key.trim_end_matches(WHITESPACE).to_string();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            out.push((name, std::mem::take(value)));
        }
        key.clear();
        value.clear();
    };
    for c in text.chars() {
        state = match state {
            State::PreKey if c == '#' || c == ';' => State::Comment,
            State::PreKey if WHITESPACE.contains(&c) => State::PreKey,
            State::PreKey | State::Key if c == '=' && state == State::Key => {
                value_before_whitespace = None;
                State::PreValue
            }
            State::PreKey | State::Key => {
                if NEWLINE.contains(&c) {
                    key.clear();
                    State::PreKey
                } else {
                    key.push(c);
                    State::Key
                }
            }
            State::PreValue | State::Value if NEWLINE.contains(&c) => {
                let trim_at = if state == State::Value {
                    value_before_whitespace
                } else {
                    None
                };
                push(&mut key, &mut value, trim_at);
                State::PreKey
            }
            State::PreValue if c == '\'' => State::SingleQuoted,
            State::PreValue if c == '"' => State::DoubleQuoted,
            State::PreValue | State::Value if c == '\\' => {
                value_before_whitespace = None;
                State::ValueEscape
            }
            State::PreValue if WHITESPACE.contains(&c) => State::PreValue,
            State::PreValue | State::Value => {
                if WHITESPACE.contains(&c) {
                    value_before_whitespace.get_or_insert(value.len());
                } else {
                    value_before_whitespace = None;
                }
                value.push(c);
                State::Value
            }
            State::ValueEscape => {
                if !NEWLINE.contains(&c) {
                    value.push(c);
                }
                State::Value
            }
            State::SingleQuoted if c == '\'' => State::PreValue,
            State::SingleQuoted => {
                value.push(c);
                State::SingleQuoted
            }
            State::DoubleQuoted if c == '"' => State::PreValue,
            State::DoubleQuoted if c == '\\' => State::DoubleQuotedEscape,
            State::DoubleQuoted => {
                value.push(c);
                State::DoubleQuoted
            }
            State::DoubleQuotedEscape => {
                if "\"\\`$".contains(c) {
                    value.push(c);
                } else if c != '\n' {
                    value.push('\\');
                    value.push(c);
                }
                State::DoubleQuoted
            }
            State::Comment if c == '\\' => State::CommentEscape,
            // systemd up to v253 continued a comment ending in `\` onto the next
            // line; since v254 that line is read (the maintained behaviour).
            State::Comment | State::CommentEscape if NEWLINE.contains(&c) => State::PreKey,
            State::Comment | State::CommentEscape => State::Comment,
        };
    }
    match state {
        State::Value => push(&mut key, &mut value, value_before_whitespace),
        State::PreValue
        | State::ValueEscape
        | State::SingleQuoted
        | State::DoubleQuoted
        | State::DoubleQuotedEscape => push(&mut key, &mut value, None),
        State::PreKey | State::Key | State::Comment | State::CommentEscape => {}
    }
    out
}

/// `--name VALUE` or `--name=VALUE`, the last one (clap's choice).
fn option_value(args: &[String], name: &str) -> Option<String> {
    let mut found = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == name {
            found = iter.next().cloned();
        } else if let Some(value) = arg
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
        {
            found = Some(value.to_string());
        }
    }
    found
}

/// `$NAME` and `${NAME}` replaced by `lookup(NAME)` (unset: empty), as systemd
/// expands ExecStart= arguments.
fn expand_variables(arg: &str, lookup: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
        } else {
            out.push_str(&lookup(name).unwrap_or_default());
            rest = &after[consumed..];
        }
    }
    out.push_str(rest);
    out
}

/// The unit's settings from `scope`'s manager; `Ok(None)` if it does not know the
/// unit (`LoadState` `not-found`, or no manager answers on that bus).
async fn read_unit(
    scope: ManagerScope,
    options: &ControlOptions,
    unit: &str,
) -> Result<Option<UnitSettings>, String> {
    let connection = match (&options.bus_address, scope) {
        (Some(address), _) => zbus::connection::Builder::address(address.as_str())
            .build()
            .await
            .map_err(|err| format!("cannot connect to {address}: {err}"))?,
        (None, ManagerScope::System) => Connection::system()
            .await
            .map_err(|err| format!("no system bus ({err})"))?,
        (None, ManagerScope::User) => Connection::session()
            .await
            .map_err(|err| format!("no session bus ({err})"))?,
    };
    let path = unit_object_path(unit);
    let unit_proxy = UnitProxy::builder(&connection)
        .path(path.clone())
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|err| err.to_string())?;
    let load_state = unit_proxy
        .load_state()
        .await
        .map_err(|err| format!("LoadState of {unit}: {err}"))?;
    if load_state.is_empty() || load_state == "not-found" {
        return Ok(None);
    }
    let service = ServiceProxy::builder(&connection)
        .path(path)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|err| err.to_string())?;
    let (exec_start, environment, environment_files, working_directory) = futures_util::join!(
        service.exec_start(),
        service.environment(),
        service.environment_files(),
        service.working_directory()
    );
    let describe = |what: &str, err: zbus::Error| format!("{what} of {unit}: {err}");
    Ok(Some(UnitSettings {
        exec_start: exec_start
            .map_err(|err| describe("ExecStart", err))?
            .into_iter()
            .map(|(_path, argv, ..)| argv)
            .collect(),
        environment: environment.map_err(|err| describe("Environment", err))?,
        environment_files: environment_files
            .map_err(|err| describe("EnvironmentFiles", err))?
            .into_iter()
            .filter_map(|(path, optional)| EnvironmentFile::read(Path::new(&path), optional))
            .collect(),
        working_directory: working_directory.unwrap_or_default(),
    }))
}

/// Whether dpkg's status database records `package` as installed: its stanza's
/// `Status:` is `install ok installed` (not `config-files`, `half-installed`, …
/// and not `deinstall`).
pub fn package_installed(dpkg_status: &Path, package: &str) -> bool {
    // The cheap check first: dpkg keeps a file list, info/PACKAGE.list, for every
    // package it has unpacked (cargo-deb builds no Multi-Arch: same package, so
    // the name has no :ARCH).
    if let Some(info) = dpkg_status.parent().map(|dir| dir.join("info"))
        && info.is_dir()
        && !info.join(format!("{package}.list")).exists()
    {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(dpkg_status) else {
        return false;
    };
    text.split("\n\n").any(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        field("Package") == Some(package) && field("Status") == Some("install ok installed")
    })
}

/// Whether `dir` is the top of a contimg checkout: a `.git` entry (a directory,
/// or a file in a worktree or submodule) and a `Cargo.toml` whose `[package]`
/// table says `name = "contimg"`.
pub fn is_checkout(dir: &Path) -> bool {
    if !dir.join(".git").exists() {
        return false;
    }
    let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
        return false;
    };
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
        {
            return value.trim().trim_matches('"') == PACKAGE_NAME;
        }
    }
    false
}

/// `path` made absolute (against `cwd`), with symlinks, `.` and `..` resolved
/// when it exists; lexically without `.` components when it does not.
fn canonical(path: &Path, cwd: Option<&Path>) -> PathBuf {
    let absolute = match (path.is_absolute(), cwd) {
        (false, Some(cwd)) => cwd.join(path),
        _ => path.to_path_buf(),
    };
    std::fs::canonicalize(&absolute)
        .or_else(|_| std::path::absolute(&absolute))
        .unwrap_or(absolute)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe on temp dirs: no env, no dpkg, cwd a plain directory.
    struct Host {
        root: tempfile::TempDir,
    }

    impl Host {
        fn new() -> Self {
            Self {
                root: tempfile::tempdir().unwrap(),
            }
        }
        fn probe(&self) -> HostProbe {
            let cwd = self.root.path().join("cwd");
            std::fs::create_dir_all(&cwd).unwrap();
            HostProbe {
                env: None,
                dpkg_status: self.root.path().join("dpkg/status"),
                cwd: Some(cwd),
            }
        }
        fn install_package(&self, status: &str) {
            let dpkg = self.root.path().join("dpkg");
            std::fs::create_dir_all(dpkg.join("info")).unwrap();
            std::fs::write(dpkg.join("info/contimg.list"), "/usr/bin/contimgctl\n").unwrap();
            std::fs::write(
                dpkg.join("status"),
                format!(
                    "Package: contimg-extra\nStatus: install ok installed\n\n\
                     Package: contimg\nStatus: {status}\nVersion: 0.1.0-1\n\n\
                     Package: zlib1g\nStatus: install ok installed\n"
                ),
            )
            .unwrap();
        }
        fn make_checkout(&self, dir: &Path, package: &str) {
            std::fs::create_dir_all(dir.join(".git")).unwrap();
            std::fs::write(
                dir.join("Cargo.toml"),
                format!("[workspace]\nmembers = []\n\n[package]\nname = \"{package}\"\n"),
            )
            .unwrap();
        }
    }

    /// No systemd manager can be reached: rule 3 is tried and gives nothing.
    fn no_manager() -> ControlOptions {
        ControlOptions {
            bus_address: Some("unix:path=/nonexistent/contimg-state-dir-test".into()),
            ..ControlOptions::default()
        }
    }

    async fn found(host: &HostProbe, flag: Option<&Path>) -> Result<StateDir, StateDirError> {
        discover(flag, &no_manager(), host).await
    }

    #[tokio::test]
    async fn the_flag_wins_over_everything() {
        let host = Host::new();
        host.install_package("install ok installed");
        let mut probe = host.probe();
        probe.env = Some("/from/env".into());
        let dir = found(&probe, Some(Path::new("rel/./x"))).await.unwrap();
        assert_eq!(dir.rule, StateDirRule::Flag);
        assert_eq!(dir.path, probe.cwd.unwrap().join("rel/x"));
        assert!(!dir.path.to_string_lossy().contains("/./"));
    }

    #[tokio::test]
    async fn the_environment_comes_second_and_an_empty_value_is_unset() {
        let host = Host::new();
        let mut probe = host.probe();
        probe.env = Some("/from/env".into());
        let dir = found(&probe, None).await.unwrap();
        assert_eq!(
            (dir.path.as_path(), &dir.rule),
            (Path::new("/from/env"), &StateDirRule::Environment)
        );
        probe.env = Some("".into());
        assert!(matches!(
            found(&probe, None).await,
            Err(StateDirError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn the_packaged_default_needs_dpkg_to_say_installed() {
        let host = Host::new();
        let probe = host.probe();
        host.make_checkout(probe.cwd.as_deref().unwrap(), "contimg");
        for (status, installed) in [
            ("install ok installed", true),
            ("deinstall ok config-files", false),
            ("install ok half-configured", false),
            ("install ok unpacked", false),
        ] {
            host.install_package(status);
            let dir = found(&probe, None).await.unwrap();
            assert_eq!(dir.rule == StateDirRule::Packaged, installed, "{status}");
            if installed {
                assert_eq!(dir.path, Path::new(PACKAGED_STATE_DIR));
                assert_eq!(
                    dir.rule.to_string(),
                    "the packaged default (dpkg: package contimg is installed)"
                );
            }
        }
        // No file list for the package: dpkg does not know it, whatever the text says.
        std::fs::remove_file(host.root.path().join("dpkg/info/contimg.list")).unwrap();
        host.install_package("install ok installed");
        std::fs::remove_file(host.root.path().join("dpkg/info/contimg.list")).unwrap();
        assert!(!package_installed(&probe.dpkg_status, PACKAGE_NAME));
    }

    #[tokio::test]
    async fn a_checkout_uses_its_state_dir_and_nothing_else_does() {
        let host = Host::new();
        let probe = host.probe();
        let cwd = probe.cwd.clone().unwrap();
        let Err(StateDirError::NotFound { tried }) = found(&probe, None).await else {
            panic!("a plain directory is no checkout");
        };
        let text = tried.join("; ");
        assert!(text.contains("not a contimg checkout"), "{text}");
        assert!(text.contains("not installed"), "{text}");

        host.make_checkout(&cwd, "other-project");
        assert!(
            found(&probe, None).await.is_err(),
            "another project's checkout"
        );

        host.make_checkout(&cwd, "contimg");
        let dir = found(&probe, None).await.unwrap();
        assert_eq!(dir.path, cwd.join("state"));
        assert_eq!(dir.rule, StateDirRule::Checkout { root: cwd.clone() });
        assert!(matches!(
            dir.require_existing(),
            Err(StateDirError::Missing { .. })
        ));
        let missing = dir.require_existing().unwrap_err().to_string();
        assert_eq!(
            missing,
            format!(
                "state dir {}/state (from ./state of the contimg checkout {}) does not exist",
                cwd.display(),
                cwd.display()
            )
        );
        // A worktree's .git is a file.
        std::fs::remove_dir(cwd.join(".git")).unwrap();
        std::fs::write(cwd.join(".git"), "gitdir: /elsewhere\n").unwrap();
        assert!(is_checkout(&cwd));
    }

    #[tokio::test]
    async fn units_are_not_asked_for_the_process_and_docker_backends() {
        let host = Host::new();
        let options = ControlOptions {
            backend: BackendChoice::Process,
            ..no_manager()
        };
        let Err(StateDirError::NotFound { tried }) = discover(None, &options, &host.probe()).await
        else {
            panic!("nothing applies");
        };
        assert!(
            tried
                .iter()
                .any(|line| line == "units: not asked (--backend process)"),
            "{tried:?}"
        );
    }

    /// A bus that accepts the connection and never answers (a hung dbus-daemon):
    /// rule 3 gives up after its timeout instead of hanging the command.
    #[tokio::test]
    async fn a_bus_that_never_answers_does_not_hang_discovery() {
        let host = Host::new();
        let socket = host.root.path().join("hung-bus");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let _held = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
        let options = ControlOptions {
            backend: BackendChoice::Systemd,
            bus_address: Some(format!("unix:path={}", socket.display())),
            ..ControlOptions::default()
        };
        let Err(StateDirError::NotFound { tried }) = discover(None, &options, &host.probe()).await
        else {
            panic!("nothing applies");
        };
        assert!(
            tried
                .iter()
                .any(|line| line == "the system manager: no answer within 5s"),
            "{tried:?}"
        );
    }

    fn unit(exec_start: &[&str], environment: &[&str], working_directory: &str) -> UnitSettings {
        UnitSettings {
            exec_start: vec![exec_start.iter().map(|s| s.to_string()).collect()],
            environment: environment.iter().map(|s| s.to_string()).collect(),
            environment_files: Vec::new(),
            working_directory: working_directory.into(),
        }
    }

    #[test]
    fn a_unit_names_the_state_dir_the_way_the_worker_reads_it() {
        let env = [
            "HDF5_USE_FILE_LOCKING=FALSE",
            "CONTIMG_STATE_DIR=/var/lib/contimg/env",
        ];
        let cases = [
            (
                unit(
                    &["/usr/bin/contimg-stream", "--state-dir", "/srv/a"],
                    &env,
                    "",
                ),
                Some(("/srv/a", UnitSetting::ExecStartStateDir)),
            ),
            (
                unit(&["/usr/bin/contimg-stream", "--state-dir=/srv/b"], &[], ""),
                Some(("/srv/b", UnitSetting::ExecStartStateDir)),
            ),
            (
                unit(
                    &[
                        "/usr/bin/contimg-stream",
                        "--config",
                        "/etc/x/streaming.toml",
                    ],
                    &env,
                    "",
                ),
                Some(("/etc/x", UnitSetting::ExecStartConfig)),
            ),
            (
                unit(&["/usr/bin/contimg-stream"], &env, ""),
                Some(("/var/lib/contimg/env", UnitSetting::Environment)),
            ),
            (
                unit(
                    &[
                        "/usr/bin/contimg-stream",
                        "--state-dir",
                        "${CONTIMG_STATE_DIR}/x",
                    ],
                    &env,
                    "",
                ),
                Some(("/var/lib/contimg/env/x", UnitSetting::ExecStartStateDir)),
            ),
            (
                unit(
                    &["/usr/bin/contimg-stream", "--state-dir", "state"],
                    &[],
                    "/srv/w",
                ),
                Some(("/srv/w/state", UnitSetting::ExecStartStateDir)),
            ),
            (
                unit(
                    &["/usr/bin/contimg-stream", "--state-dir", "state"],
                    &[],
                    "",
                ),
                None,
            ),
            (unit(&["/usr/bin/contimg-stream"], &["OTHER=1"], "/"), None),
        ];
        for (settings, expected) in cases {
            let got = settings.state_dir();
            let expected = expected.map(|(dir, setting)| (PathBuf::from(dir), setting));
            assert_eq!(got, expected, "{settings:?}");
        }
    }

    #[test]
    fn environment_files_parse_like_systemd_reads_them() {
        let text = "# comment\n; comment \\\n  A = plain value  \n\
                    B='single $x\n  two'\nC=\"dq \\\" \\$ \\n x\"  \nD=esc\\ aped\\\ncontinued\n\
                    not an assignment\n1BAD=x\nE=\nF=\"a\" 'b' c\nG=last";
        let parsed = parse_environment_file(text);
        let expected = [
            ("A", "plain value"),
            ("B", "single $x\n  two"),
            ("C", "dq \" $ \\n x"),
            ("D", "esc apedcontinued"),
            ("E", ""),
            ("F", "abc"),
            ("G", "last"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn environment_files_override_environment_and_the_last_file_wins() {
        let file = |path: &str, text: &str| EnvironmentFile {
            path: path.into(),
            assignments: Ok(parse_environment_file(text)),
        };
        let mut settings = unit(
            &["/usr/bin/contimg-stream"],
            &["CONTIMG_STATE_DIR=/env"],
            "",
        );
        settings.environment_files = vec![
            file("/a.env", "CONTIMG_STATE_DIR=/a\n"),
            file("/b.env", "OTHER=1\n"),
        ];
        assert_eq!(
            settings.state_dir(),
            Some((
                PathBuf::from("/a"),
                UnitSetting::EnvironmentFile("/a.env".into())
            ))
        );
        settings
            .environment_files
            .push(file("/c.env", "CONTIMG_STATE_DIR=/c\n"));
        settings.environment_files.push(EnvironmentFile {
            path: "/unread.env".into(),
            assignments: Err("Permission denied (os error 13)".into()),
        });
        let (dir, setting) = settings.state_dir().unwrap();
        assert_eq!(dir, Path::new("/c"));
        assert!(settings.depends_on_environment(&setting));
        assert_eq!(
            settings.unread_environment_files(),
            ["/unread.env: Permission denied (os error 13)"]
        );
        // ExecStart= variables are expanded from the files too.
        settings.exec_start = vec![vec![
            "/usr/bin/contimg-stream".into(),
            "--state-dir=${CONTIMG_STATE_DIR}/x".into(),
        ]];
        assert_eq!(
            settings.state_dir(),
            Some((PathBuf::from("/c/x"), UnitSetting::ExecStartStateDir))
        );
    }

    #[test]
    fn a_missing_optional_environment_file_is_skipped_and_others_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.env");
        assert_eq!(EnvironmentFile::read(&missing, true), None);
        let required = EnvironmentFile::read(&missing, false).unwrap();
        assert!(
            required
                .assignments
                .unwrap_err()
                .contains("No such file or directory")
        );
        let not_a_file = EnvironmentFile::read(dir.path(), true).unwrap();
        assert!(
            not_a_file
                .assignments
                .unwrap_err()
                .contains("Is a directory")
        );
        let file = dir.path().join("ok.env");
        std::fs::write(&file, "CONTIMG_STATE_DIR=\"/srv/x y\"\n").unwrap();
        assert_eq!(
            EnvironmentFile::read(&file, false).unwrap().assignments,
            Ok(vec![("CONTIMG_STATE_DIR".into(), "/srv/x y".into())])
        );
    }

    #[test]
    fn variables_expand_like_systemd_does() {
        let lookup = |name: &str| (name == "A").then(|| "x".to_string());
        assert_eq!(expand_variables("$A/${A}-$B-$", &lookup), "x/x--$");
        assert_eq!(expand_variables("plain", &lookup), "plain");
    }
}
