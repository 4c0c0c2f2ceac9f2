//! `ktplay check --database` on a real PostgreSQL (issue 25): a throw-away server (initdb into
//! a temp folder, a random loopback port, a password; stopped after). A release that drops a
//! column the old queries read is refused with the failing query and the migration named; an
//! expand-only release passes; the scratch database is gone afterwards, a database that was
//! there before is untouched, and the password is never printed. Skips loudly only when the
//! PostgreSQL server binaries are absent (CI installs Debian's `postgresql`).

use std::path::{Path, PathBuf};
use std::process::Command;

const PASSWORD: &str = "pw-7f3a9c1e-NEVER-SHOWN";

fn pg_bin(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .collect();
        versions.sort();
        dirs.extend(versions.into_iter().rev());
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

struct Pg {
    _dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
    user: Option<&'static str>,
    pg_ctl: PathBuf,
}

impl Pg {
    /// `None` (and a loud message) when the binaries are absent.
    fn start() -> Option<Pg> {
        let (Some(initdb), Some(pg_ctl)) = (pg_bin("initdb"), pg_bin("pg_ctl")) else {
            eprintln!("SKIPPED: no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql: install Debian's `postgresql`");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        // PostgreSQL refuses to run as root: as `postgres` (or `nobody`) then.
        let root = unsafe_is_root();
        let user = root.then(|| {
            if Command::new("id")
                .arg("postgres")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                "postgres"
            } else {
                "nobody"
            }
        });
        if let Some(u) = user {
            let ok = Command::new("chown")
                .args(["-R", u])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let run = |bin: &Path, args: &[&str]| {
            let mut cmd = match user {
                Some(u) => {
                    let mut c = Command::new("runuser");
                    c.args(["-u", u, "--"]).arg(bin);
                    c
                }
                None => Command::new(bin),
            };
            let out = cmd.args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{} {args:?}: {}{}",
                bin.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(
            &initdb,
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "ktplay",
                "--auth=scram-sha-256",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--no-sync",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
            dir.path().display()
        );
        let log = dir.path().join("log");
        run(
            &pg_ctl,
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        Some(Pg {
            _dir: dir,
            data,
            port,
            user,
            pg_ctl,
        })
    }

    fn url(&self) -> String {
        format!(
            "postgres://ktplay:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Statements as the server's superuser, for setting up and asserting.
    fn sql(&self, db: &str, sql: &str) -> Vec<String> {
        let url = format!("postgres://ktplay:{PASSWORD}@127.0.0.1:{}/{db}", self.port);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut out = Vec::new();
            for m in client.simple_query(sql).await.unwrap() {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    out.push(r.get(0).unwrap_or("").to_string());
                }
            }
            out
        })
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let mut cmd = match self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&self.pg_ctl);
                c
            }
            None => Command::new(&self.pg_ctl),
        };
        let _ = cmd
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

const USERS: &str = "CREATE TABLE users (id bigint PRIMARY KEY, email text, name text);\n";
const QUERIES: &str = "-- what api 1.4.2 issues\nSELECT id, email, name\n  FROM users\n WHERE id = $1;\nINSERT INTO users (id, email, name) VALUES (1, 'a@example.com', 'A');\nSELECT count(*) FROM users;\n";

fn repo(release: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("db")).unwrap();
    std::fs::write(repo.join("db/V1_4_0__users.sql"), USERS).unwrap();
    for (name, text) in release {
        std::fs::write(repo.join("db").join(name), text).unwrap();
    }
    std::fs::write(repo.join("queries-1.4.sql"), QUERIES).unwrap();
    std::fs::write(
        repo.join("p.ktplay"),
        "playbook \"p\" {\n  namespace \"shop\"\n  component api {\n    deployment \"shop-api\"\n    image \"shop/api\"\n    from 1.4.2\n    to 1.5.0\n    migrations backward_compatible {\n      files \"db\"\n      queries \"queries-1.4.sql\"\n    }\n  }\n  stage api {\n    rolling api\n  }\n}\n",
    )
    .unwrap();
    dir
}

fn check(dir: &Path, url: &str) -> (i32, String, String) {
    let out = assert_cmd::Command::cargo_bin("ktplay")
        .unwrap()
        .current_dir(dir)
        .args(["check", "p.ktplay"])
        .env("KTPLAY_DATABASE_URL", url)
        .env("KTPLAY_SQUAWK", "off")
        .env("COLUMNS", "1000")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn database_check_refuses_a_dropped_column_and_passes_an_expand_only_release() {
    let Some(pg) = Pg::start() else { return };
    // Someone else's database on the same server: never touched.
    pg.sql("postgres", "CREATE DATABASE app");
    pg.sql(
        "app",
        "CREATE TABLE keep (v text); INSERT INTO keep VALUES ('mine')",
    );

    let breaking = repo(&[(
        "V1_5_0__drop_email.sql",
        "ALTER TABLE users DROP COLUMN email;\n",
    )]);
    let (code, out, err) = check(breaking.path(), &pg.url());
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("ktplay::database::old_query"), "{err}");
    assert!(
        err.contains("a query of api 1.4.2 fails against the schema of 1.5.0 (after the migration `db/V1_5_0__drop_email.sql`): `SELECT id, email, name FROM users WHERE id = $1`: column \"email\" does not exist"),
        "{err}"
    );
    // The INSERT of the old code fails too, on its own line.
    assert!(
        err.contains("`INSERT INTO users (id, email, name) VALUES (1, 'a@example.com', 'A')`"),
        "{err}"
    );
    assert!(
        err.contains("database: api 1.5.0: 2 queries of 1.4.2 failed against the schema of 1.5.0"),
        "{err}"
    );

    let expand = repo(&[
        (
            "V1_5_0__add_nick.sql",
            "ALTER TABLE users ADD COLUMN nick text;\n",
        ),
        (
            "V1_5_0__index.sql",
            "CREATE INDEX CONCURRENTLY users_nick ON users (nick);\n",
        ),
    ]);
    let (code, out, err) = check(expand.path(), &pg.url());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(
            "database: api 1.5.0: 3 queries of 1.4.2 passed against the schema of 1.5.0 ("
        ),
        "{err}"
    );

    for text in [&out, &err] {
        assert!(!text.contains(PASSWORD), "the password was printed: {text}");
    }
    // No scratch database left; the other database as it was; the rolled-back INSERT gone
    // with its scratch database.
    let left = pg.sql(
        "postgres",
        "SELECT datname FROM pg_database WHERE datname LIKE 'ktplay_scratch_%'",
    );
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        pg.sql("app", "SELECT v FROM keep"),
        vec!["mine".to_string()]
    );
    let tables = pg.sql(
        "app",
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
    );
    assert_eq!(tables, vec!["keep".to_string()]);
}

#[test]
fn an_unreachable_database_is_an_error_never_a_pass_and_never_shows_the_password() {
    let dir = repo(&[(
        "V1_5_0__add_nick.sql",
        "ALTER TABLE users ADD COLUMN nick text;\n",
    )]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://ktplay:{PASSWORD}@127.0.0.1:{port}/postgres");
    let (code, out, err) = check(dir.path(), &url);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("ktplay::database::unavailable"), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains(PASSWORD) && !out.contains(PASSWORD), "{err}");
}
