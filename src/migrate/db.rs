//! `ktplay check --database URL`: the N-1 claim checked on a real PostgreSQL.
//!
//! For each component with migration files and a `queries` file: a scratch database of this
//! check's own (`ktplay_scratch_<random>`, created on the server the URL names, never an
//! existing one), every migration up to `to` applied in order, statement by statement (so
//! `CREATE INDEX CONCURRENTLY` runs outside a transaction), then each statement of `queries`
//! inside one transaction that is rolled back: prepared (the server resolves every table and
//! column), and executed when it takes no parameters, each under a savepoint so one failure
//! does not hide the next. The scratch database is dropped at the end, whatever happened.
//! The URL is a secret: it is never printed, and server errors are shown through the
//! redactor with its password.

use std::time::Instant;

use tokio_postgres::{Client, NoTls};

use super::split::{self, Stmt};
use super::Component;

/// A statement of the queries file that failed against the new schema.
#[derive(Debug, Clone)]
pub struct Failed {
    pub stmt: Stmt,
    pub error: String,
}

/// What the check found for one component.
#[derive(Debug)]
pub enum Outcome {
    /// Every query passed (how many; the wall time in ms).
    Passed {
        queries: usize,
        millis: u128,
    },
    Failed {
        failed: Vec<Failed>,
        millis: u128,
    },
    /// It could not run (server, scratch database, a migration that does not apply).
    Unavailable(String),
}

/// Run the check for `c` against the server of `url`.
pub fn check(url: &str, c: &Component) -> Outcome {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Outcome::Unavailable(format!("no runtime: {e}")),
    };
    let secret = password(url);
    let out = rt.block_on(check_async(url, c));
    match (out, secret) {
        (Outcome::Unavailable(why), Some(pw)) => Outcome::Unavailable(why.replace(&pw, "(secret)")),
        (Outcome::Failed { failed, millis }, Some(pw)) => Outcome::Failed {
            failed: failed
                .into_iter()
                .map(|f| Failed {
                    error: f.error.replace(&pw, "(secret)"),
                    ..f
                })
                .collect(),
            millis,
        },
        (o, _) => o,
    }
}

fn password(url: &str) -> Option<String> {
    let cfg: tokio_postgres::Config = url.parse().ok()?;
    let pw = cfg.get_password()?;
    let pw = String::from_utf8_lossy(pw).into_owned();
    (!pw.is_empty()).then_some(pw)
}

async fn connect(cfg: &tokio_postgres::Config) -> Result<Client, String> {
    let (client, conn) =
        tokio::time::timeout(std::time::Duration::from_secs(20), cfg.connect(NoTls))
            .await
            .map_err(|_| "the server did not answer within 20s".to_string())?
            .map_err(|e| format!("cannot connect: {}", describe(&e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

async fn check_async(url: &str, c: &Component) -> Outcome {
    let started = Instant::now();
    let Some((_, queries)) = &c.queries else {
        return Outcome::Unavailable(format!(
            "component {} names no `queries` file: nothing to run against the new schema",
            c.name
        ));
    };
    let cfg: tokio_postgres::Config = match url.parse() {
        Ok(c) => c,
        Err(_) => return Outcome::Unavailable("the database URL cannot be read".into()),
    };
    let admin = match connect(&cfg).await {
        Ok(a) => a,
        Err(e) => return Outcome::Unavailable(e),
    };
    let name = format!("ktplay_scratch_{}", hex::encode(rand::random::<[u8; 6]>()));
    if let Err(e) = admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
    {
        return Outcome::Unavailable(format!(
            "cannot create the scratch database {name}: {}",
            describe(&e)
        ));
    }
    let _ = admin
        .batch_execute(&format!(
            "COMMENT ON DATABASE {name} IS 'ktplay check --database: scratch, dropped when the check ends'"
        ))
        .await;
    let mut scratch_cfg = cfg.clone();
    scratch_cfg.dbname(&name);
    let result = match connect(&scratch_cfg).await {
        Ok(db) => {
            let r = run(&db, c, queries).await;
            drop(db);
            r
        }
        Err(e) => Err(e),
    };
    // Ours, by its random name: dropped whatever happened (FORCE: our own session may linger).
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    let millis = started.elapsed().as_millis();
    match result {
        Err(why) => Outcome::Unavailable(why),
        Ok((n, failed)) if failed.is_empty() => Outcome::Passed { queries: n, millis },
        Ok((_, failed)) => Outcome::Failed { failed, millis },
    }
}

async fn run(db: &Client, c: &Component, queries: &str) -> Result<(usize, Vec<Failed>), String> {
    for f in c.files.iter().filter(|f| f.version <= c.to) {
        let Some(text) = &f.text else {
            return Err(format!("migration `{}` was not read", f.shown));
        };
        for s in split::statements(text) {
            if let Err(e) = db.batch_execute(s.text(text)).await {
                return Err(format!(
                    "migration `{}` does not apply (line {}): {}",
                    f.shown,
                    text[..s.start].lines().count() + 1,
                    describe(&e)
                ));
            }
        }
    }
    let stmts = split::statements(queries);
    let mut failed = Vec::new();
    db.batch_execute("BEGIN")
        .await
        .map_err(|e| format!("cannot begin a transaction: {}", describe(&e)))?;
    for s in &stmts {
        let q = s.text(queries);
        let _ = db.batch_execute("SAVEPOINT ktplay_q").await;
        let outcome = match db.prepare(q).await {
            Ok(p) if p.params().is_empty() => db.execute(&p, &[]).await.map(|_| ()),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            failed.push(Failed {
                stmt: s.clone(),
                error: describe(&e),
            });
            let _ = db.batch_execute("ROLLBACK TO SAVEPOINT ktplay_q").await;
        }
    }
    let _ = db.batch_execute("ROLLBACK").await;
    Ok((stmts.len(), failed))
}

/// `check --database`: every examined component with a `queries` file, its outcome as
/// diagnostics (the queries file joins the `SourceMap`) and in the summaries.
pub fn check_all(checked: &mut crate::check::Checked, url: &str) {
    use crate::diag::Problem;
    use crate::span::Span;
    use miette::LabeledSpan;
    let examined = std::mem::take(&mut checked.examined);
    for (file, ex) in &examined {
        for c in &ex.components {
            let Some((q, text)) = &c.queries else {
                continue;
            };
            // Files that could not be found or read are errors already; no half check.
            if !c.problems.is_empty() {
                continue;
            }
            let outcome = check(url, c);
            let summary = checked
                .migrations
                .iter_mut()
                .find(|s| s.component == c.name && s.from == c.from.to_string());
            match outcome {
                Outcome::Passed { queries, millis } => {
                    if let Some(s) = summary {
                        s.database = Some(format!(
                            "{queries} quer{} of {} passed against the schema of {} ({millis} ms)",
                            if queries == 1 { "y" } else { "ies" },
                            c.from,
                            c.to
                        ));
                    }
                }
                Outcome::Unavailable(reason) => {
                    if let Some(s) = summary {
                        s.database = Some(format!("not checked: {reason}"));
                    }
                    checked.problems.push(Problem::new(
                        *file,
                        super::MigrateError::Unavailable {
                            reason,
                            span: c.span.into(),
                        },
                    ));
                }
                Outcome::Failed { failed, millis } => {
                    if let Some(s) = summary {
                        s.database = Some(format!(
                            "{} quer{} of {} failed against the schema of {} ({millis} ms)",
                            failed.len(),
                            if failed.len() == 1 { "y" } else { "ies" },
                            c.from,
                            c.to
                        ));
                    }
                    let shown_dir = checked.sources.get(*file).shown_dir();
                    let id = match checked.sources.find(&q.path) {
                        Some(id) => id,
                        None => checked.sources.add(
                            shown_dir.join(&q.shown).to_string_lossy().into_owned(),
                            q.path.clone(),
                            text.clone(),
                        ),
                    };
                    let new: Vec<String> = c
                        .new_files()
                        .map(|(_, f)| format!("`{}`", f.shown))
                        .collect();
                    for f in failed {
                        let query = f.stmt.text(text);
                        let one_line: String =
                            query.split_whitespace().collect::<Vec<_>>().join(" ");
                        let message = format!(
                            "a query of {} {} fails against the schema of {} ({}): `{}`: {}",
                            c.name,
                            c.from,
                            c.to,
                            if new.is_empty() {
                                "no new migrations".to_string()
                            } else {
                                format!(
                                    "after the migration{} {}",
                                    if new.len() == 1 { "" } else { "s" },
                                    new.join(", ")
                                )
                            },
                            one_line,
                            f.error
                        );
                        let label = LabeledSpan::new_with_span(
                            Some(f.error.clone()),
                            Span::new(id, f.stmt.start, f.stmt.end),
                        );
                        checked.problems.push(Problem::new(
                            id,
                            super::MigrateError::OldQuery {
                                message,
                                labels: vec![label],
                                help: format!(
                                    "{} runs during the rollout and after a rollback: keep what it reads in {} (expand), remove it in the release after (contract)",
                                    c.from, c.to
                                ),
                            },
                        ));
                    }
                }
            }
        }
    }
    checked.examined = examined;
}
