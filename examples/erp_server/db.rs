//! The database: SQLite by default, PostgreSQL when `DATABASE_URL` is set; its schema and the deterministic seed.
//!
//! Both run behind one [`AnyPool`] (sqlx's `Any` driver), so every query of the handlers is written once: the
//! SQL is the common subset of the two dialects, with `$1`-style placeholders (which SQLite binds by number
//! too), and values are limited to what `Any` carries (integers, text, booleans; money is integer cents and
//! timestamps are RFC 3339 text). Only the schema differs per database.
//!
//! Every start rebuilds the data, so the demo always begins from the same state: the SQLite file is deleted and
//! recreated; on PostgreSQL the demo's tables are dropped and recreated. Seeding runs in one transaction with
//! multi-row `INSERT`s: a few dozen statements instead of ~15,000, which keeps start-up fast even in a debug
//! build.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AnyPool, AssertSqlSafe, ConnectOptions, Connection};

use crate::catalog::{self, Catalog};
use crate::password;

/// Seed of the demo data set; change it to get a different (but still reproducible) catalogue.
const SEED: u64 = 0x5eed_f00d_cafe_0001;

/// Connections in the pool on SQLite: a few, since SQLite serialises writers anyway and the demo runs on small
/// machines.
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// Connections in the pool on PostgreSQL: enough for the dashboard's concurrent queries and a few requests.
const POSTGRES_MAX_CONNECTIONS: u32 = 8;

/// Rows per multi-row `INSERT`, kept well below SQLite's limit of 32,766 bound parameters (PostgreSQL allows
/// 65,535).
const ROWS_PER_INSERT: usize = 500;

/// The login user created by the seed.
pub(crate) const ADMIN_EMAIL: &str = "admin@pharmacy.test";
const ADMIN_PASSWORD: &str = "pharmacy";
/// Fixed so the seed is reproducible; a real system draws a fresh random salt per user.
const ADMIN_SALT: [u8; 16] = [
    0xa7, 0x4e, 0x19, 0xc3, 0x82, 0x5d, 0xf0, 0x36, 0x6b, 0xe8, 0x21, 0x9c, 0x47, 0xd5, 0x0a, 0xb1,
];

/// The demo's tables, children first (the order to drop them in).
const TABLES: [&str; 5] = [
    "quotation_lines",
    "quotations",
    "users",
    "customers",
    "products",
];

const SQLITE_SCHEMA: &str = "
CREATE TABLE products (
    id          INTEGER PRIMARY KEY,
    sku         TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    updated_at  TEXT    NOT NULL
);
CREATE TABLE customers (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    city  TEXT NOT NULL,
    phone TEXT NOT NULL
);
CREATE TABLE quotations (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    status      TEXT    NOT NULL CHECK (status IN ('draft', 'sent', 'accepted', 'rejected')),
    created_at  TEXT    NOT NULL,
    total_cents INTEGER NOT NULL
);
CREATE TABLE quotation_lines (
    id               INTEGER PRIMARY KEY,
    quotation_id     INTEGER NOT NULL REFERENCES quotations (id),
    product_id       INTEGER NOT NULL REFERENCES products (id),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0)
);
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL
);
CREATE INDEX quotations_customer_id ON quotations (customer_id);
CREATE INDEX quotations_created_at ON quotations (created_at);
CREATE INDEX quotations_status ON quotations (status);
CREATE INDEX quotation_lines_quotation_id ON quotation_lines (quotation_id);
CREATE INDEX quotation_lines_product_id ON quotation_lines (product_id);
";

/// The same tables on PostgreSQL: 64-bit integers throughout (the handlers read every integer as `i64`), and the
/// timestamps compared byte by byte (`COLLATE "C"`), as SQLite does, whatever the database's locale.
const POSTGRES_SCHEMA: &str = r#"
CREATE TABLE products (
    id          BIGINT PRIMARY KEY,
    sku         TEXT   NOT NULL UNIQUE,
    name        TEXT   NOT NULL,
    category    TEXT   NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    stock       BIGINT NOT NULL CHECK (stock >= 0),
    updated_at  TEXT   COLLATE "C" NOT NULL
);
CREATE TABLE customers (
    id    BIGINT PRIMARY KEY,
    name  TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    city  TEXT NOT NULL,
    phone TEXT NOT NULL
);
CREATE TABLE quotations (
    id          BIGINT PRIMARY KEY,
    customer_id BIGINT NOT NULL REFERENCES customers (id),
    status      TEXT   NOT NULL CHECK (status IN ('draft', 'sent', 'accepted', 'rejected')),
    created_at  TEXT   COLLATE "C" NOT NULL,
    total_cents BIGINT NOT NULL
);
CREATE TABLE quotation_lines (
    id               BIGSERIAL PRIMARY KEY,
    quotation_id     BIGINT NOT NULL REFERENCES quotations (id),
    product_id       BIGINT NOT NULL REFERENCES products (id),
    quantity         BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0)
);
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL
);
CREATE INDEX quotations_customer_id ON quotations (customer_id);
CREATE INDEX quotations_created_at ON quotations (created_at);
CREATE INDEX quotations_status ON quotations (status);
CREATE INDEX quotation_lines_quotation_id ON quotation_lines (quotation_id);
CREATE INDEX quotation_lines_product_id ON quotation_lines (product_id);
"#;

/// Where the demo's data lives.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    /// A SQLite file, deleted at start and at shutdown.
    Sqlite(PathBuf),
    /// A PostgreSQL database; its demo tables are dropped and recreated at start.
    Postgres(String),
}

impl Location {
    /// `DATABASE_URL` when set (a `postgres://` URL), else the SQLite file `ERP_DATABASE`, else
    /// `perfscope-erp-<pid>.db` in the temp directory (one file per process, so two demos can run side by side).
    pub(crate) fn from_env() -> Result<Self, String> {
        if let Some(url) = std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())
        {
            return if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                Err("DATABASE_URL must be a postgres:// URL (unset it to use SQLite)".to_owned())
            } else if cfg!(feature = "postgres") {
                Ok(Self::Postgres(url))
            } else {
                Err(
                    "DATABASE_URL is set, but this build has no PostgreSQL driver: run \
                     `cargo run --features perfscope-demo/postgres --example erp_server`"
                        .to_owned(),
                )
            };
        }
        let path = std::env::var_os("ERP_DATABASE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!("perfscope-erp-{}.db", std::process::id()))
            });
        Ok(Self::Sqlite(path))
    }

    /// Deletes what the demo leaves behind at shutdown: the SQLite file (the PostgreSQL tables stay until the
    /// next start resets them).
    pub(crate) fn remove_files(&self) {
        if let Self::Sqlite(path) = self {
            remove_sqlite_files(path);
        }
    }
}

/// For logs: the file, or the URL without its password.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "SQLite file {}", path.display()),
            Self::Postgres(url) => match url.parse::<AnyConnectOptions>() {
                Ok(options) => {
                    let mut url = options.database_url;
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    write!(f, "PostgreSQL {url}")
                }
                Err(_) => f.write_str("PostgreSQL (unparsable DATABASE_URL)"),
            },
        }
    }
}

/// Deletes the database file and its WAL companions; missing files are fine.
fn remove_sqlite_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

/// Opens the database at `location` with its previous demo data removed and the schema applied, ready for
/// [`seed`].
pub(crate) async fn open_fresh(location: &Location) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    match location {
        Location::Sqlite(path) => {
            remove_sqlite_files(path);
            // The file is created with a native connection, in WAL mode (which lets the readers of concurrent
            // requests proceed while a `PUT` writes). The mode is stored in the file, so the pool's
            // connections, opened from a URL, use it too; foreign keys are on there by default.
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
            options.connect().await?.close().await?;
            let pool = AnyPoolOptions::new()
                .max_connections(SQLITE_MAX_CONNECTIONS)
                // Every connection opened now: no request waits for one, or finds its set-up in its queries.
                .min_connections(SQLITE_MAX_CONNECTIONS)
                .connect(options.to_url_lossy().as_str())
                .await?;
            sqlx::raw_sql(SQLITE_SCHEMA).execute(&pool).await?;
            Ok(pool)
        }
        Location::Postgres(url) => {
            let pool = AnyPoolOptions::new()
                .max_connections(POSTGRES_MAX_CONNECTIONS)
                // As for SQLite: every connection opened now.
                .min_connections(POSTGRES_MAX_CONNECTIONS)
                .connect(url)
                .await?;
            let existing: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.tables
                 WHERE table_schema = current_schema()
                   AND table_name IN ('products', 'customers', 'quotations', 'quotation_lines', 'users')",
            )
            .fetch_one(&pool)
            .await?;
            // One transaction: a failure leaves the previous tables as they were.
            let mut tx = pool.begin().await?;
            if existing > 0 {
                tracing::warn!(
                    database = %location,
                    "resetting the database: dropping and recreating the demo tables ({})",
                    TABLES.join(", ")
                );
                let drop = format!("DROP TABLE IF EXISTS {}", TABLES.join(", "));
                sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut *tx).await?;
            }
            sqlx::raw_sql(POSTGRES_SCHEMA).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(pool)
        }
    }
}

/// The environment variable that makes this instance join a database another instance created and seeded.
pub(crate) const JOIN_VARIABLE: &str = "ERP_JOIN_DATABASE";

/// Whether `ERP_JOIN_DATABASE=1`: use the database as it is (no reset, no seed, no deletion at shutdown), as the
/// second and later instances of a fleet do.
pub(crate) fn joins_existing() -> Result<bool, String> {
    match std::env::var(JOIN_VARIABLE).as_deref() {
        Err(_) | Ok("") | Ok("0") => Ok(false),
        Ok("1") => Ok(true),
        Ok(other) => Err(format!("{JOIN_VARIABLE} must be 1 or 0, not {other:?}")),
    }
}

/// Opens the database another instance created and seeded, without changing it; an error names what is missing.
pub(crate) async fn open_existing(
    location: &Location,
) -> Result<AnyPool, Box<dyn std::error::Error>> {
    sqlx::any::install_default_drivers();
    let (url, max) = match location {
        Location::Sqlite(path) => {
            if !path.exists() {
                return Err(format!(
                    "{JOIN_VARIABLE}=1, but {} does not exist: start the first instance without it",
                    path.display()
                )
                .into());
            }
            let options = SqliteConnectOptions::new().filename(path);
            (options.to_url_lossy().to_string(), SQLITE_MAX_CONNECTIONS)
        }
        Location::Postgres(url) => (url.clone(), POSTGRES_MAX_CONNECTIONS),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(max)
        .connect(&url)
        .await?;
    let products: Result<i64, _> = sqlx::query_scalar("SELECT COUNT(*) FROM products")
        .fetch_one(&pool)
        .await;
    match products {
        Ok(n) if n > 0 => Ok(pool),
        _ => Err(format!(
            "{JOIN_VARIABLE}=1, but {location} has no seeded demo tables: start the first instance without it"
        )
        .into()),
    }
}

/// `$first, $first+1, ..` for `count` values: the placeholders of an `IN (..)` list or a `VALUES` row, numbered in
/// the order the values are bound.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT INTO <into> VALUES ($1, .., $columns), ..` for `rows` rows: the multi-row statement both databases
/// accept.
fn insert_sql(into: &str, columns: usize, rows: usize) -> AssertSqlSafe<String> {
    let values: Vec<String> = (0..rows)
        .map(|row| format!("({})", placeholders(row * columns + 1, columns)))
        .collect();
    AssertSqlSafe(format!("INSERT INTO {into} VALUES {}", values.join(", ")))
}

/// What [`seed`] inserted and how long it took.
#[derive(Debug)]
pub(crate) struct SeedReport {
    pub(crate) products: usize,
    pub(crate) customers: usize,
    pub(crate) quotations: usize,
    pub(crate) lines: usize,
    pub(crate) elapsed: Duration,
}

/// Fills the empty schema with the deterministic data set and the admin user, in one transaction.
pub(crate) async fn seed(pool: &AnyPool) -> Result<SeedReport, sqlx::Error> {
    let started = Instant::now();
    let Catalog {
        products,
        customers,
        quotations,
    } = catalog::generate(SEED);
    let admin_hash = password::hash(ADMIN_PASSWORD, &ADMIN_SALT, password::ITERATIONS);

    let mut tx = pool.begin().await?;

    for chunk in products.chunks(ROWS_PER_INSERT) {
        let sql = insert_sql(
            "products (id, sku, name, category, price_cents, stock, updated_at)",
            7,
            chunk.len(),
        );
        let mut insert = sqlx::query(sql);
        for p in chunk {
            insert = insert
                .bind(p.id)
                .bind(&p.sku)
                .bind(&p.name)
                .bind(p.category)
                .bind(p.price_cents)
                .bind(p.stock)
                .bind(&p.updated_at);
        }
        insert.execute(&mut *tx).await?;
    }

    for chunk in customers.chunks(ROWS_PER_INSERT) {
        let sql = insert_sql("customers (id, name, email, city, phone)", 5, chunk.len());
        let mut insert = sqlx::query(sql);
        for c in chunk {
            insert = insert
                .bind(c.id)
                .bind(&c.name)
                .bind(&c.email)
                .bind(c.city)
                .bind(&c.phone);
        }
        insert.execute(&mut *tx).await?;
    }

    for chunk in quotations.chunks(ROWS_PER_INSERT) {
        let sql = insert_sql(
            "quotations (id, customer_id, status, created_at, total_cents)",
            5,
            chunk.len(),
        );
        let mut insert = sqlx::query(sql);
        for q in chunk {
            insert = insert
                .bind(q.id)
                .bind(q.customer_id)
                .bind(q.status)
                .bind(&q.created_at)
                .bind(q.total_cents);
        }
        insert.execute(&mut *tx).await?;
    }

    // Lines get their ids from the database, in insertion order: quotation by quotation, as generated.
    let lines: Vec<_> = quotations
        .iter()
        .flat_map(|q| q.lines.iter().map(move |line| (q.id, line)))
        .collect();
    for chunk in lines.chunks(ROWS_PER_INSERT * 2) {
        let sql = insert_sql(
            "quotation_lines (quotation_id, product_id, quantity, unit_price_cents)",
            4,
            chunk.len(),
        );
        let mut insert = sqlx::query(sql);
        for (quotation_id, line) in chunk {
            insert = insert
                .bind(*quotation_id)
                .bind(line.product_id)
                .bind(line.quantity)
                .bind(line.unit_price_cents);
        }
        insert.execute(&mut *tx).await?;
    }

    sqlx::query("INSERT INTO users (email, name, role, password_hash) VALUES ($1, $2, $3, $4)")
        .bind(ADMIN_EMAIL)
        .bind("Pharmacy Admin")
        .bind("admin")
        .bind(admin_hash)
        .execute(&mut *tx)
        .await?;

    tx.commit().await?;
    // Fresh statistics so the query planner picks the indexes from the first request on.
    sqlx::query("ANALYZE").execute(pool).await?;

    Ok(SeedReport {
        products: products.len(),
        customers: customers.len(),
        quotations: quotations.len(),
        lines: lines.len(),
        elapsed: started.elapsed(),
    })
}
