//! Times as people read them. Below every layer that shows one (a lock's age in `repo`,
//! snapshot times in `snapshot`, the mount's folder names, the CLI), so none of them imports
//! another for it.

/// Format ns since the epoch as `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn format_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}
