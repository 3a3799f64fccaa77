//! PostgreSQL: a custom-format `pg_dump` of one database, taken from a snapshot one
//! session exports and holds open, the row count of every table in that same snapshot, and
//! a verification that restores the dump into a scratch database on the server and
//! compares the counts table by table.
//!
//! The password never reaches an argument list or a child's environment: children read it
//! from a private pgpass file (mode 0600) in the backup's work directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::{Client, NoTls};

use crate::process;

/// Where the database is and who reads it.
#[derive(Debug, Clone)]
pub struct Database {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role the dump and the counts run as.
    pub user: String,
    /// The database dumped.
    pub name: String,
    /// The role's password, if the server asks for one.
    pub password: Option<String>,
}

/// Rows per table (`schema.table`), in one snapshot.
pub type RowCounts = BTreeMap<String, u64>;

/// What a dump produced.
#[derive(Debug, Clone, Serialize)]
pub struct Dump {
    /// The custom-format archive.
    pub file: PathBuf,
    /// Rows per table in the snapshot the archive holds.
    pub rows: RowCounts,
}

/// A PostgreSQL step that failed, with what to look at.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The server could not be reached or refused the session.
    #[error("PostgreSQL {host}:{port} database `{database}`: {source}")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Database.
        database: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// A query failed.
    #[error("PostgreSQL: {what}: {source}")]
    Query {
        /// What was asked.
        what: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// `pg_dump` or `pg_restore` failed.
    #[error(transparent)]
    Tool(#[from] process::ProcessError),
    /// The restored copy does not hold what the source held at dump time.
    #[error("the restored dump differs from the database at dump time: {0}")]
    Mismatch(String),
    /// Writing the private password file failed.
    #[error("cannot write the pgpass file in {dir}: {source}")]
    Pgpass {
        /// The work directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Database {
    async fn connect(&self, database: &str) -> Result<Client, PostgresError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(database)
            .application_name("jisu-deploy backup")
            .connect_timeout(Duration::from_secs(30));
        if let Some(password) = &self.password {
            config.password(password);
        }
        let (client, connection) =
            config
                .connect(NoTls)
                .await
                .map_err(|source| PostgresError::Connect {
                    host: self.host.clone(),
                    port: self.port,
                    database: database.to_owned(),
                    source,
                })?;
        tokio::spawn(async move {
            // Ends when the client is dropped; its errors surface on the client's calls.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The connection flags a libpq tool takes; never the password.
    fn tool_args(&self, database: &str) -> Vec<String> {
        vec![
            "--host".into(),
            self.host.clone(),
            "--port".into(),
            self.port.to_string(),
            "--username".into(),
            self.user.clone(),
            "--no-password".into(),
            // `--dbname` would read a connection string; this names one database only.
            format!("--dbname={}", quote_conninfo(database)),
        ]
    }

    /// Environment for a libpq tool: the pgpass file in `dir`, when there is a password.
    fn tool_env(&self, dir: &Path) -> Result<BTreeMap<String, String>, PostgresError> {
        let mut env = BTreeMap::new();
        if let Some(password) = &self.password {
            let file = dir.join(".pgpass");
            write_private(
                &file,
                &pgpass_line(&self.host, self.port, &self.user, password),
            )
            .map_err(|source| PostgresError::Pgpass {
                dir: dir.display().to_string(),
                source,
            })?;
            env.insert("PGPASSFILE".into(), file.display().to_string());
        }
        env.insert("PGCONNECT_TIMEOUT".into(), "30".into());
        Ok(env)
    }
}

/// `dbname=...` as a conninfo value: quoted, with `\` and `'` escaped.
fn quote_conninfo(database: &str) -> String {
    let escaped = database.replace('\\', "\\\\").replace('\'', "\\'");
    format!("dbname='{escaped}'")
}

/// One pgpass line for this host, port and user, any database; `:` and `\` escaped.
fn pgpass_line(host: &str, port: u16, user: &str, password: &str) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    format!(
        "{}:{port}:*:{}:{}\n",
        escape(host),
        escape(user),
        escape(password)
    )
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// An identifier in double quotes, inner quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The password a pgpass file (`host:port:database:user:password`, `*` matching any
/// field, `\:` and `\\` escaped) gives for this connection: its first matching line.
pub fn password_from_pgpass(text: &str, db: &Database) -> Option<String> {
    let port = db.port.to_string();
    let wanted = [
        db.host.as_str(),
        port.as_str(),
        db.name.as_str(),
        db.user.as_str(),
    ];
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_pgpass(line)?;
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want);
            matches.then(|| fields[4].clone())
        })
}

/// The five fields of a pgpass line, unescaped; `None` for a line that has not five.
fn split_pgpass(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next()?),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then_some(fields)
}

/// `"schema"."table"`.
fn quote_table(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

const TABLES: &str = "SELECT n.nspname, c.relname FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' \
     ORDER BY 1, 2";

/// Rows of every user table, as the client's current snapshot sees them.
async fn count_rows(client: &Client) -> Result<RowCounts, PostgresError> {
    let tables = client
        .query(TABLES, &[])
        .await
        .map_err(|source| PostgresError::Query {
            what: "list the tables".into(),
            source,
        })?;
    let mut counts = RowCounts::new();
    for row in tables {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        let name = quote_table(&schema, &table);
        let count: i64 = client
            .query_one(&format!("SELECT count(*) FROM {name}"), &[])
            .await
            .map_err(|source| PostgresError::Query {
                what: format!("count the rows of {schema}.{table}"),
                source,
            })?
            .get(0);
        counts.insert(format!("{schema}.{table}"), count.max(0) as u64);
    }
    Ok(counts)
}

/// Dumps `db` to `dir/postgres.dump` (custom format) and counts its rows, both from one
/// exported snapshot, so the counts are exactly what the archive holds.
pub async fn dump(db: &Database, dir: &Path, timeout: Duration) -> Result<Dump, PostgresError> {
    let client = db.connect(&db.name).await?;
    let query = |what: &'static str| {
        move |source| PostgresError::Query {
            what: what.into(),
            source,
        }
    };
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(query("begin the snapshot transaction"))?;
    let snapshot: String = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(query("export the snapshot"))?
        .get(0);
    let rows = count_rows(&client).await?;
    let file = dir.join("postgres.dump");
    let mut argv = vec![
        "pg_dump".to_owned(),
        "--format=custom".into(),
        format!("--snapshot={snapshot}"),
        format!("--file={}", file.display()),
    ];
    argv.extend(db.tool_args(&db.name));
    let env = db.tool_env(dir)?;
    process::run(&super::tool("pg_dump", &argv, dir, &env, timeout)).await?;
    // The snapshot had to outlive pg_dump's own transaction start; it can go now.
    client
        .batch_execute("COMMIT")
        .await
        .map_err(query("end the snapshot transaction"))?;
    Ok(Dump { file, rows })
}

/// Restores `dump` into a scratch database on the same server, compares its row counts
/// with the source's at dump time, and drops the scratch database whatever happened.
/// The role needs `CREATEDB`.
pub async fn verify(
    db: &Database,
    dump: &Dump,
    dir: &Path,
    scratch: &str,
    timeout: Duration,
) -> Result<(), PostgresError> {
    let admin = db.connect("postgres").await?;
    let scratch_name = quote_ident(scratch);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {scratch_name}"))
        .await
        .map_err(|source| PostgresError::Query {
            what: format!("drop a leftover scratch database {scratch}"),
            source,
        })?;
    admin
        .batch_execute(&format!("CREATE DATABASE {scratch_name}"))
        .await
        .map_err(|source| PostgresError::Query {
            what: format!("create the scratch database {scratch} (the role needs CREATEDB)"),
            source,
        })?;
    let restored = restore_and_count(db, dump, dir, scratch, timeout).await;
    let dropped = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {scratch_name}"))
        .await;
    let counts = restored?;
    dropped.map_err(|source| PostgresError::Query {
        what: format!("drop the scratch database {scratch}"),
        source,
    })?;
    compare(&dump.rows, &counts).map_err(PostgresError::Mismatch)
}

/// Restores `dump` into a new database `target` on the server and compares its rows with
/// the counts recorded at dump time: the restore drill. `target` must not exist (a drill
/// never writes over a database); it is kept, for a person to look at.
pub async fn restore(
    db: &Database,
    dump: &Dump,
    dir: &Path,
    target: &str,
    timeout: Duration,
) -> Result<RowCounts, PostgresError> {
    let admin = db.connect("postgres").await?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&target])
        .await
        .map_err(|source| PostgresError::Query {
            what: format!("look for database {target}"),
            source,
        })?;
    if exists.is_some() {
        return Err(PostgresError::Mismatch(format!(
            "database `{target}` already exists; a restore drill only creates a new one (name another with --into)"
        )));
    }
    admin
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(target)))
        .await
        .map_err(|source| PostgresError::Query {
            what: format!("create database {target} (the role needs CREATEDB)"),
            source,
        })?;
    let counts = restore_and_count(db, dump, dir, target, timeout).await?;
    compare(&dump.rows, &counts).map_err(PostgresError::Mismatch)?;
    Ok(counts)
}

async fn restore_and_count(
    db: &Database,
    dump: &Dump,
    dir: &Path,
    scratch: &str,
    timeout: Duration,
) -> Result<RowCounts, PostgresError> {
    let mut argv = vec![
        "pg_restore".to_owned(),
        "--exit-on-error".into(),
        "--no-owner".into(),
        "--no-privileges".into(),
        "--single-transaction".into(),
    ];
    argv.extend(db.tool_args(scratch));
    argv.push(dump.file.display().to_string());
    let env = db.tool_env(dir)?;
    process::run(&super::tool("pg_restore", &argv, dir, &env, timeout)).await?;
    let client = db.connect(scratch).await?;
    count_rows(&client).await
}

/// `Err` naming every table whose rows differ, or that only one side has.
pub fn compare(source: &RowCounts, restored: &RowCounts) -> Result<(), String> {
    let mut differences = Vec::new();
    for (table, rows) in source {
        match restored.get(table) {
            Some(got) if got == rows => {}
            Some(got) => {
                differences.push(format!("{table}: {rows} rows at dump time, {got} restored"))
            }
            None => differences.push(format!(
                "{table}: {rows} rows at dump time, missing from the restore"
            )),
        }
    }
    for table in restored.keys().filter(|t| !source.contains_key(*t)) {
        differences.push(format!("{table}: restored but not in the source"));
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(differences.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_compare_table_by_table() {
        let source: RowCounts = [("public.a".to_owned(), 3), ("public.b".to_owned(), 0)].into();
        assert_eq!(compare(&source, &source.clone()), Ok(()));
        let mut fewer = source.clone();
        fewer.insert("public.a".into(), 2);
        fewer.remove("public.b");
        fewer.insert("public.c".into(), 1);
        assert_eq!(
            compare(&source, &fewer).unwrap_err(),
            "public.a: 3 rows at dump time, 2 restored; public.b: 0 rows at dump time, missing from the restore; public.c: restored but not in the source"
        );
    }

    #[test]
    fn a_pgpass_file_gives_the_first_matching_password() {
        let db = Database {
            host: "db.prod".into(),
            port: 5432,
            user: "jisu".into(),
            name: "jisu".into(),
            password: None,
        };
        let text =
            "# comment\nother:5432:*:jisu:nope\ndb.prod:5432:*:jisu:pa\\:ss\n*:*:*:*:fallback\n";
        assert_eq!(password_from_pgpass(text, &db).as_deref(), Some("pa:ss"));
        assert_eq!(
            password_from_pgpass("*:*:*:*:any\n", &db).as_deref(),
            Some("any")
        );
        assert_eq!(
            password_from_pgpass("db.prod:5433:*:jisu:x\nbroken\n", &db),
            None
        );
    }

    #[test]
    fn identifiers_conninfo_and_pgpass_are_escaped() {
        assert_eq!(quote_table("public", "we\"ird"), "\"public\".\"we\"\"ird\"");
        assert_eq!(quote_conninfo("a'b\\c"), "dbname='a\\'b\\\\c'");
        assert_eq!(
            pgpass_line("db:host", 5432, "u\\", "p:w"),
            "db\\:host:5432:*:u\\\\:p\\:w\n"
        );
    }
}
