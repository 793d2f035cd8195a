//! A PostgreSQL database of a test's own: created on the server named by
//! `AGENT_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and
//! dropped when the test is done. Without a server the test is skipped with one line saying
//! how to run it, unless `AGENT_POSTGRES_REQUIRED=1`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use agent_store::PostgresStore;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test, dropped with it.
pub struct TestDb {
    admin_url: String,
    /// The database's name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

fn admin_url() -> String {
    std::env::var("AGENT_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn admin() -> Option<tokio_postgres::Client> {
    let url = admin_url();
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await;
    match connected {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            Some(client)
        }
        Ok(Err(e)) => skip(&e.to_string()),
        Err(_) => skip("no answer in 5 s"),
    }
}

fn skip(why: &str) -> Option<tokio_postgres::Client> {
    if std::env::var("AGENT_POSTGRES_REQUIRED").as_deref() == Ok("1") {
        panic!("AGENT_POSTGRES_REQUIRED=1 but PostgreSQL cannot be reached: {why}");
    }
    println!(
        "skipped: no PostgreSQL at AGENT_TEST_POSTGRES_URL (default {DEFAULT_URL}): {why}; \
         start one (user postgres, trust auth) to run this test"
    );
    None
}

impl TestDb {
    /// A fresh database, or `None` (skipped) when there is no server.
    pub async fn create(tag: &str) -> Option<TestDb> {
        let client = admin().await?;
        let name = format!(
            "agent_test_{tag}_{}_{}",
            std::process::id(),
            agent_core::run::new_run_id()
                .trim_start_matches("run_")
                .to_ascii_lowercase()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(10)
                .collect::<String>()
        );
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let url = with_database(&admin_url(), &name);
        Some(TestDb {
            admin_url: admin_url(),
            name,
            url,
        })
    }

    /// A store on a schema of its own in this database.
    pub async fn store(&self, schema: &str) -> PostgresStore {
        PostgresStore::builder(&self.url)
            .schema(schema)
            .max_connections(4)
            .connect()
            .await
            .expect("connect the store")
    }

    /// Drops the database (its connections are closed first).
    pub async fn drop_db(self) {
        if let Ok((client, connection)) =
            tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls).await
        {
            tokio::spawn(connection);
            let _ = client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
        }
    }
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `bound`.
pub async fn until<F, Fut>(bound: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < bound,
            "{what} did not happen in {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
