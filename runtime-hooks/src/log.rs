//! Errors and notes in the shape runc writes them, which containerd and podman read back:
//! a line `{"level":"error","msg":"...","time":"..."}` in `--log` with `--log-format json`,
//! `time="..." level=error msg="..."` otherwise; errors also go to stderr.

use std::io::Write;

/// The current time as RFC 3339 in UTC (seconds).
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Where and how log lines go.
pub struct Log {
    pub path: Option<String>,
    pub json: bool,
}

impl Log {
    /// Writes one line at `level` to the log file (if any).
    pub fn line(&self, level: &str, msg: &str) {
        let Some(path) = &self.path else { return };
        let line = if self.json {
            serde_json::json!({"level": level, "msg": msg, "time": now()}).to_string()
        } else {
            format!("time={:?} level={level} msg={msg:?}", now())
        };
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }

    /// An error: to the log and to stderr.
    pub fn error(&self, msg: &str) {
        self.line("error", msg);
        eprintln!("stasis-runc: {msg}");
    }
}
