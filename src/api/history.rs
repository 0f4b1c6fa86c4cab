//! Resource and queue history in the daemon's own SQLite file
//! (`<state_dir>/history.sqlite3`). rusqlite connections are not `Sync`, so one
//! dedicated thread owns the connection and serves requests over a channel.
//!
//! Retention: raw samples for 26 h (serves 1h and 24h), 5-minute rollups for
//! 8 days (serves 7d). Both are pruned on every insert, so the file stays bounded.
//! Free space per configured directory (`disk_samples`) is kept raw for 26 h too:
//! the dashboard's disk trend spans 24 h.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use utoipa::ToSchema;

use super::models::iso_from_unix;

const RAW_RETENTION_S: f64 = 26.0 * 3600.0;
const ROLLUP_STEP_S: f64 = 300.0;
const ROLLUP_RETENTION_S: f64 = 8.0 * 86400.0;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history DB {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the history thread has stopped")]
    Gone,
}

/// One sample (or the average of a bucket of samples).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryPoint {
    /// Bucket start, ISO-8601 UTC.
    pub t: String,
    pub cpu_percent: Option<f64>,
    pub memory_mb: Option<f64>,
    /// pending + in_progress + collecting.
    pub queue_depth: Option<f64>,
    pub pending: Option<f64>,
    pub in_progress: Option<f64>,
    pub collecting: Option<f64>,
    pub failed: Option<f64>,
    pub completed: Option<f64>,
    pub processing_rate_per_hour: Option<f64>,
    /// True when the service ran for at least half the bucket.
    pub running: bool,
}

/// `GET /api/streaming/history`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryResponse {
    pub window: String,
    pub step_seconds: u64,
    pub points: Vec<HistoryPoint>,
}

/// The raw input of one sample.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub t: f64,
    pub cpu_percent: Option<f64>,
    pub memory_mb: Option<f64>,
    pub pending: Option<u64>,
    pub in_progress: Option<u64>,
    pub collecting: Option<u64>,
    pub failed: Option<u64>,
    pub completed: Option<u64>,
    pub rate: Option<f64>,
    pub running: bool,
    /// Free bytes per configured directory (`DirUsage::dir`), when measured.
    pub disk_free: Vec<(String, u64)>,
}

/// One bucket of a directory's free-space trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FreeSample {
    /// Bucket start, ISO-8601 UTC.
    pub t: String,
    /// Average free bytes over the bucket.
    pub free_bytes: f64,
}

/// The free-space trend of one configured directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiskTrend {
    pub dir: String,
    pub points: Vec<FreeSample>,
}

/// The supported windows: name → (length, bucket step). 1h and 24h read raw
/// samples, 7d the rollups.
pub fn window_spec(name: &str) -> Option<(f64, f64)> {
    match name {
        "1h" => Some((3600.0, 60.0)),
        "24h" => Some((86400.0, 600.0)),
        "7d" => Some((7.0 * 86400.0, 3600.0)),
        _ => None,
    }
}

enum Command {
    Record(Sample),
    Query {
        window: String,
        now: f64,
        reply: oneshot::Sender<Result<HistoryResponse, HistoryError>>,
    },
    DiskTrend {
        window: String,
        now: f64,
        reply: oneshot::Sender<Result<Vec<DiskTrend>, HistoryError>>,
    },
}

/// Cheap to clone; every clone talks to the same thread.
#[derive(Clone)]
pub struct History {
    tx: std_mpsc::Sender<Command>,
}

impl History {
    /// Opens (creating) the DB and starts its thread.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        let wrap = |source| HistoryError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(wrap)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS samples (
                 t REAL NOT NULL, cpu REAL, mem REAL, pending REAL, in_progress REAL,
                 collecting REAL, failed REAL, completed REAL, rate REAL, running REAL NOT NULL);
             CREATE INDEX IF NOT EXISTS samples_t ON samples(t);
             CREATE TABLE IF NOT EXISTS rollup_5m (
                 t REAL PRIMARY KEY, cpu REAL, mem REAL, pending REAL, in_progress REAL,
                 collecting REAL, failed REAL, completed REAL, rate REAL, running REAL NOT NULL);
             CREATE TABLE IF NOT EXISTS disk_samples (t REAL NOT NULL, dir TEXT NOT NULL, free REAL NOT NULL);
             CREATE INDEX IF NOT EXISTS disk_samples_t ON disk_samples(t);",
        )
        .map_err(wrap)?;
        let (tx, rx) = std_mpsc::channel::<Command>();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("history-db".to_string())
            .spawn(move || serve(conn, path, rx))
            .map_err(|err| HistoryError::Sqlite {
                path: PathBuf::new(),
                source: rusqlite::Error::InvalidPath(err.to_string().into()),
            })?;
        Ok(Self { tx })
    }

    pub fn record(&self, sample: Sample) {
        let _ = self.tx.send(Command::Record(sample));
    }

    pub async fn query(&self, window: &str, now: f64) -> Result<HistoryResponse, HistoryError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Query {
                window: window.to_string(),
                now,
                reply,
            })
            .map_err(|_| HistoryError::Gone)?;
        rx.await.map_err(|_| HistoryError::Gone)?
    }

    /// Free space per directory over `window` (1h, 24h; 7d reads what the 26 h
    /// of raw samples hold), one average per bucket of the window's step.
    pub async fn disk_trend(&self, window: &str, now: f64) -> Result<Vec<DiskTrend>, HistoryError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::DiskTrend {
                window: window.to_string(),
                now,
                reply,
            })
            .map_err(|_| HistoryError::Gone)?;
        rx.await.map_err(|_| HistoryError::Gone)?
    }
}

fn serve(conn: Connection, path: PathBuf, rx: std_mpsc::Receiver<Command>) {
    let wrap = |source| HistoryError::Sqlite {
        path: path.clone(),
        source,
    };
    while let Ok(command) = rx.recv() {
        match command {
            Command::Record(sample) => {
                if let Err(err) = insert(&conn, &sample) {
                    tracing::warn!(%err, "cannot record a history sample");
                }
            }
            Command::Query { window, now, reply } => {
                let _ = reply.send(query(&conn, &window, now).map_err(wrap));
            }
            Command::DiskTrend { window, now, reply } => {
                let _ = reply.send(disk_trend(&conn, &window, now).map_err(wrap));
            }
        }
    }
}

const COLUMNS: &str = "AVG(cpu), AVG(mem), AVG(pending), AVG(in_progress), AVG(collecting), AVG(failed), \
     AVG(completed), AVG(rate), AVG(running)";

fn insert(conn: &Connection, s: &Sample) -> rusqlite::Result<()> {
    let f = |v: Option<u64>| v.map(|v| v as f64);
    conn.execute(
        "INSERT INTO samples VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            s.t,
            s.cpu_percent,
            s.memory_mb,
            f(s.pending),
            f(s.in_progress),
            f(s.collecting),
            f(s.failed),
            f(s.completed),
            s.rate,
            if s.running { 1.0 } else { 0.0 }
        ],
    )?;
    // Re-aggregate the current 5-minute bucket; INSERT OR REPLACE keeps one row
    // per bucket however many samples it has.
    let bucket = (s.t / ROLLUP_STEP_S).floor() * ROLLUP_STEP_S;
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO rollup_5m SELECT ?1, {COLUMNS} FROM samples
             WHERE t >= ?1 AND t < ?2"
        ),
        params![bucket, bucket + ROLLUP_STEP_S],
    )?;
    for (dir, free) in &s.disk_free {
        conn.execute(
            "INSERT INTO disk_samples VALUES (?1, ?2, ?3)",
            params![s.t, dir, *free as f64],
        )?;
    }
    conn.execute("DELETE FROM samples WHERE t < ?1", [s.t - RAW_RETENTION_S])?;
    conn.execute(
        "DELETE FROM disk_samples WHERE t < ?1",
        [s.t - RAW_RETENTION_S],
    )?;
    conn.execute(
        "DELETE FROM rollup_5m WHERE t < ?1",
        [s.t - ROLLUP_RETENTION_S],
    )?;
    Ok(())
}

fn query(conn: &Connection, window: &str, now: f64) -> rusqlite::Result<HistoryResponse> {
    let (length, step) = window_spec(window).unwrap_or((3600.0, 60.0));
    let table = if length > RAW_RETENTION_S - 3600.0 && window == "7d" {
        "rollup_5m"
    } else {
        "samples"
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT CAST(t / ?1 AS INTEGER) * ?1 AS bucket, {COLUMNS} FROM {table}
         WHERE t >= ?2 GROUP BY bucket ORDER BY bucket"
    ))?;
    let rows = stmt.query_map(params![step, now - length], |row| {
        let bucket: f64 = row.get(0)?;
        let pending: Option<f64> = row.get(3)?;
        let in_progress: Option<f64> = row.get(4)?;
        let collecting: Option<f64> = row.get(5)?;
        let depth = match (pending, in_progress, collecting) {
            (None, None, None) => None,
            (p, i, c) => Some(p.unwrap_or(0.0) + i.unwrap_or(0.0) + c.unwrap_or(0.0)),
        };
        let running: Option<f64> = row.get(9)?;
        Ok(HistoryPoint {
            t: iso_from_unix(bucket).unwrap_or_default(),
            cpu_percent: row.get(1)?,
            memory_mb: row.get(2)?,
            queue_depth: depth,
            pending,
            in_progress,
            collecting,
            failed: row.get(6)?,
            completed: row.get(7)?,
            processing_rate_per_hour: row.get(8)?,
            running: running.unwrap_or(0.0) >= 0.5,
        })
    })?;
    Ok(HistoryResponse {
        window: window.to_string(),
        step_seconds: step as u64,
        points: rows.collect::<Result<_, _>>()?,
    })
}

fn disk_trend(conn: &Connection, window: &str, now: f64) -> rusqlite::Result<Vec<DiskTrend>> {
    let (length, step) = window_spec(window).unwrap_or((86400.0, 600.0));
    let mut stmt = conn.prepare(
        "SELECT dir, CAST(t / ?1 AS INTEGER) * ?1 AS bucket, AVG(free) FROM disk_samples
         WHERE t >= ?2 GROUP BY dir, bucket ORDER BY dir, bucket",
    )?;
    let rows = stmt.query_map(params![step, now - length], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, f64>(1)?,
            row.get::<_, f64>(2)?,
        ))
    })?;
    let mut trends: Vec<DiskTrend> = Vec::new();
    for row in rows {
        let (dir, bucket, free) = row?;
        let point = FreeSample {
            t: iso_from_unix(bucket).unwrap_or_default(),
            free_bytes: free,
        };
        match trends.last_mut() {
            Some(trend) if trend.dir == dir => trend.points.push(point),
            _ => trends.push(DiskTrend {
                dir,
                points: vec![point],
            }),
        }
    }
    Ok(trends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_downsamples_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(&dir.path().join("h.sqlite3")).unwrap();
        let now = 1_800_000_000.0;
        // Two days of one sample per minute.
        for i in 0..(2 * 1440) {
            history.record(Sample {
                t: now - f64::from(i) * 60.0,
                cpu_percent: Some(10.0),
                pending: Some(2),
                running: true,
                ..Default::default()
            });
        }
        let hour = history.query("1h", now).await.unwrap();
        assert!(
            (60..=61).contains(&hour.points.len()),
            "{}",
            hour.points.len()
        );
        assert_eq!(hour.points[0].queue_depth, Some(2.0));
        let day = history.query("24h", now).await.unwrap();
        assert!((144..=145).contains(&day.points.len()));
        let week = history.query("7d", now).await.unwrap();
        // Rollups survive past raw retention: ~48 hourly buckets.
        assert!(week.points.len() >= 47, "{}", week.points.len());
    }

    #[tokio::test]
    async fn free_space_per_dir_is_averaged_per_bucket_and_pruned_after_26_h() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(&dir.path().join("h.sqlite3")).unwrap();
        let now = 1_800_000_000.0;
        // 30 h of one sample a minute; output_dir loses 1 MB a minute.
        for i in (0..30 * 60).rev() {
            let free = 10_000_000_000 - (30 * 60 - i) * 1_000_000;
            history.record(Sample {
                t: now - f64::from(i as u32) * 60.0,
                disk_free: vec![
                    ("output_dir".to_string(), free),
                    ("state_dir".to_string(), 5_000_000_000),
                ],
                ..Default::default()
            });
        }
        let day = history.disk_trend("24h", now).await.unwrap();
        let names: Vec<&str> = day.iter().map(|t| t.dir.as_str()).collect();
        assert_eq!(names, ["output_dir", "state_dir"]);
        let output = &day[0].points;
        assert!((144..=145).contains(&output.len()), "{}", output.len());
        assert!(output.windows(2).all(|w| w[1].free_bytes < w[0].free_bytes));
        assert!(day[1].points.iter().all(|p| p.free_bytes == 5e9));
        // `now` starts a bucket: the last one holds the newest sample only, the
        // one before averages ten minutes 10..1 min ago.
        assert_eq!(output[output.len() - 1].free_bytes, 8_200_000_000.0);
        assert_eq!(output[output.len() - 2].free_bytes, 8_205_500_000.0);
        // Raw samples older than 26 h are gone, so a 7d trend starts 26 h back.
        let week = history.disk_trend("7d", now).await.unwrap();
        assert!(
            (26..=27).contains(&week[0].points.len()),
            "{}",
            week[0].points.len()
        );
    }
}
