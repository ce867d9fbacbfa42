//! Minimal levelled logging to standard error, one line per event, prefixed with a UTC timestamp.
//!
//! The level is process-wide (`LOG_LEVEL`, default `info`). Per-message events are never logged at
//! `info`, so a busy server's log stays readable and cheap.

use std::sync::atomic::{AtomicU8, Ordering};

/// How much to log, from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    /// Parses `error`, `warn`, `info` or `debug` (any case).
    pub fn parse(text: &str) -> Option<Level> {
        match text.trim().to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    /// The name `LOG_LEVEL` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the process-wide log level.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether events at `level` are written.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

#[doc(hidden)]
pub fn write(level: Level, message: std::fmt::Arguments<'_>) {
    let now = crate::util::clock::iso8601(std::time::SystemTime::now());
    eprintln!("{now} {} {message}", level.label());
}

/// Logs at error level.
#[macro_export]
macro_rules! log_error { ($($arg:tt)*) => { $crate::log::log_at($crate::log::Level::Error, format_args!($($arg)*)) } }
/// Logs at warn level.
#[macro_export]
macro_rules! log_warn { ($($arg:tt)*) => { $crate::log::log_at($crate::log::Level::Warn, format_args!($($arg)*)) } }
/// Logs at info level.
#[macro_export]
macro_rules! log_info { ($($arg:tt)*) => { $crate::log::log_at($crate::log::Level::Info, format_args!($($arg)*)) } }
/// Logs at debug level.
#[macro_export]
macro_rules! log_debug { ($($arg:tt)*) => { $crate::log::log_at($crate::log::Level::Debug, format_args!($($arg)*)) } }

#[doc(hidden)]
pub fn log_at(level: Level, message: std::fmt::Arguments<'_>) {
    if enabled(level) {
        write(level, message);
    }
}
