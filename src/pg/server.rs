//! A connection to the PostgreSQL server, configured as libpq would be from the environment
//! (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`),
//! and the few questions cairn asks it. Plain connections only (a local socket or a trusted
//! network): `PGSSLMODE=require` or stricter is refused rather than ignored.

use crate::error::{Error, ErrorKind, Result};
use std::time::Duration;

/// An open session. Non-exclusive backups belong to the session that started them.
pub struct Server {
    client: postgres::Client,
    /// `server_version_num`.
    pub version: u32,
}

fn pg_err(what: &str, e: postgres::Error) -> Error {
    let detail = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    Error::new(ErrorKind::Backend, format!("PostgreSQL: {what}: {detail}"))
}

/// Where and how to connect, from the libpq environment variables.
pub fn config_from_env() -> Result<postgres::Config> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(mode) = var("PGSSLMODE") {
        if !matches!(mode.as_str(), "disable" | "allow" | "prefer") {
            return Err(Error::usage(format!(
                "PGSSLMODE={mode}: cairn connects without TLS (a local socket or a trusted network); unset PGSSLMODE or set it to prefer"
            )));
        }
    }
    let mut c = postgres::Config::new();
    match var("PGHOST") {
        Some(hosts) => {
            for h in hosts.split(',') {
                c.host(h);
            }
        }
        None => {
            for dir in ["/var/run/postgresql", "/tmp"] {
                if std::path::Path::new(dir).is_dir() {
                    c.host_path(dir);
                }
            }
        }
    }
    if let Some(p) = var("PGPORT") {
        let port: u16 = p
            .parse()
            .map_err(|_| Error::usage(format!("PGPORT={p} is not a port number")))?;
        c.port(port);
    }
    let user = var("PGUSER").unwrap_or_else(crate::repo::keys::current_user);
    c.dbname(&var("PGDATABASE").unwrap_or_else(|| user.clone()));
    c.user(&user);
    if let Some(pw) = var("PGPASSWORD") {
        c.password(pw);
    }
    c.application_name(&var("PGAPPNAME").unwrap_or_else(|| "cairn".into()));
    let timeout = var("PGCONNECT_TIMEOUT")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(30);
    c.connect_timeout(Duration::from_secs(timeout.max(2)));
    Ok(c)
}

impl Server {
    /// Connect as the environment says.
    pub fn connect() -> Result<Server> {
        let config = config_from_env()?;
        let mut client = config
            .connect(postgres::NoTls)
            .map_err(|e| pg_err("cannot connect (check PGHOST, PGPORT, PGUSER)", e))?;
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .and_then(|r| r.try_get(0))
            .map_err(|e| pg_err("server_version_num", e))?;
        let version = u32::try_from(version).unwrap_or(0);
        if version < 130000 {
            return Err(Error::usage(format!(
                "PostgreSQL {} is not supported (13 or later)",
                version / 10000
            )));
        }
        Ok(Server { client, version })
    }

    /// One text value.
    pub fn text(&mut self, sql: &str) -> Result<String> {
        self.client
            .query_one(sql, &[])
            .and_then(|r| r.try_get::<_, String>(0))
            .map_err(|e| pg_err(sql, e))
    }

    /// One row of text values.
    pub fn texts(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Option<String>>> {
        let row = self
            .client
            .query_one(sql, params)
            .map_err(|e| pg_err(sql, e))?;
        (0..row.len())
            .map(|i| {
                row.try_get::<_, Option<String>>(i)
                    .map_err(|e| pg_err(sql, e))
            })
            .collect()
    }

    /// Every row of a query, as text.
    pub fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let rows = self.client.query(sql, &[]).map_err(|e| pg_err(sql, e))?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        row.try_get::<_, Option<String>>(i)
                            .map_err(|e| pg_err(sql, e))
                    })
                    .collect()
            })
            .collect()
    }

    /// The cluster's system identifier.
    pub fn system_identifier(&mut self) -> Result<u64> {
        let s = self.text("SELECT system_identifier::text FROM pg_control_system()")?;
        s.parse()
            .map_err(|_| Error::corrupt(format!("PostgreSQL: odd system identifier {s:?}")))
    }

    /// The server's clock now, ns since the Unix epoch.
    pub fn now_ns(&mut self) -> Result<i64> {
        let us: i64 = self
            .client
            .query_one(
                "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| pg_err("clock_timestamp()", e))?;
        Ok(us.saturating_mul(1000))
    }
}
