//! The binary's logger: the library logs through the `log` facade, and this writes each record to
//! standard error as one line, in one write (so lines from many threads never interleave), as text
//! (`<time> <LEVEL> <message>`) or, with `LOG_FORMAT=json`, one JSON object per line
//! (`{"time","level","target","message"}`).

use std::io::Write;
use std::time::SystemTime;

use log::{LevelFilter, Log, Metadata, Record};

#[path = "util/clock.rs"]
#[allow(dead_code)]
mod clock;

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

struct StderrLogger {
    level: LevelFilter,
    format: Format,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let time = clock::iso8601(SystemTime::now());
        let mut line = match self.format {
            Format::Text => format!("{time} {:<5} {}", record.level(), record.args()),
            Format::Json => serde_json::json!({
                "time": time,
                "level": record.level().as_str().to_ascii_lowercase(),
                "target": record.target(),
                "message": record.args().to_string(),
            })
            .to_string(),
        };
        line.push('\n');
        // One write of the whole line; if stderr is gone there is nowhere left to report it.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger for the rest of the process, at `level`.
pub fn install(level: LevelFilter, format: Format) {
    // The logger lives as long as the process: leaking its one allocation is what that means.
    let logger: &'static StderrLogger = Box::leak(Box::new(StderrLogger { level, format }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
