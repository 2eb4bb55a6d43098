//! The SQLite database: where it lives, its schema, and the deterministic seed.
//!
//! Every start deletes the file and rebuilds it, so the demo always begins from the same state and a crashed run
//! leaves nothing to clean up by hand. Seeding runs in one transaction with multi-row `INSERT`s: a few dozen
//! statements instead of ~15,000, which keeps start-up fast even in a debug build.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use crate::catalog::{self, Catalog};
use crate::password;

/// Seed of the demo data set; change it to get a different (but still reproducible) catalogue.
const SEED: u64 = 0x5eed_f00d_cafe_0001;

/// Connections in the pool: a few, since SQLite serialises writers anyway and the demo runs on small machines.
const MAX_CONNECTIONS: u32 = 4;

/// Rows per multi-row `INSERT`, kept well below SQLite's limit of 32,766 bound parameters.
const ROWS_PER_INSERT: usize = 500;

/// The login user created by the seed.
pub(crate) const ADMIN_EMAIL: &str = "admin@pharmacy.test";
const ADMIN_PASSWORD: &str = "pharmacy";
/// Fixed so the seed is reproducible; a real system draws a fresh random salt per user.
const ADMIN_SALT: [u8; 16] = [
    0xa7, 0x4e, 0x19, 0xc3, 0x82, 0x5d, 0xf0, 0x36, 0x6b, 0xe8, 0x21, 0x9c, 0x47, 0xd5, 0x0a, 0xb1,
];

const SCHEMA: &str = "
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

/// `ERP_DATABASE`, or `perfscope-erp-<pid>.db` in the temp directory (one file per process, so two demos can run
/// side by side).
pub(crate) fn database_path() -> PathBuf {
    std::env::var_os("ERP_DATABASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("perfscope-erp-{}.db", std::process::id()))
        })
}

/// Deletes the database file and its WAL companions; missing files are fine.
pub(crate) fn remove_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

/// Deletes any previous database at `path`, creates a new one in WAL mode and applies the schema.
pub(crate) async fn open_fresh(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    remove_files(path);
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // WAL lets the readers of concurrent requests proceed while a `PUT` writes.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .connect_with(options)
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&pool).await?;
    Ok(pool)
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
pub(crate) async fn seed(pool: &SqlitePool) -> Result<SeedReport, sqlx::Error> {
    let started = Instant::now();
    let Catalog {
        products,
        customers,
        quotations,
    } = catalog::generate(SEED);
    let admin_hash = password::hash(ADMIN_PASSWORD, &ADMIN_SALT, password::ITERATIONS);

    let mut tx = pool.begin().await?;

    for chunk in products.chunks(ROWS_PER_INSERT) {
        QueryBuilder::<Sqlite>::new(
            "INSERT INTO products (id, sku, name, category, price_cents, stock, updated_at) ",
        )
        .push_values(chunk, |mut row, p| {
            row.push_bind(p.id)
                .push_bind(p.sku.clone())
                .push_bind(p.name.clone())
                .push_bind(p.category)
                .push_bind(p.price_cents)
                .push_bind(p.stock)
                .push_bind(p.updated_at.clone());
        })
        .build()
        .execute(&mut *tx)
        .await?;
    }

    for chunk in customers.chunks(ROWS_PER_INSERT) {
        QueryBuilder::<Sqlite>::new("INSERT INTO customers (id, name, email, city, phone) ")
            .push_values(chunk, |mut row, c| {
                row.push_bind(c.id)
                    .push_bind(c.name.clone())
                    .push_bind(c.email.clone())
                    .push_bind(c.city)
                    .push_bind(c.phone.clone());
            })
            .build()
            .execute(&mut *tx)
            .await?;
    }

    for chunk in quotations.chunks(ROWS_PER_INSERT) {
        QueryBuilder::<Sqlite>::new(
            "INSERT INTO quotations (id, customer_id, status, created_at, total_cents) ",
        )
        .push_values(chunk, |mut row, q| {
            row.push_bind(q.id)
                .push_bind(q.customer_id)
                .push_bind(q.status)
                .push_bind(q.created_at.clone())
                .push_bind(q.total_cents);
        })
        .build()
        .execute(&mut *tx)
        .await?;
    }

    let lines: Vec<_> = quotations
        .iter()
        .flat_map(|q| q.lines.iter().map(move |line| (q.id, line)))
        .collect();
    for chunk in lines.chunks(ROWS_PER_INSERT * 2) {
        QueryBuilder::<Sqlite>::new(
            "INSERT INTO quotation_lines (quotation_id, product_id, quantity, unit_price_cents) ",
        )
        .push_values(chunk, |mut row, (quotation_id, line)| {
            row.push_bind(*quotation_id)
                .push_bind(line.product_id)
                .push_bind(line.quantity)
                .push_bind(line.unit_price_cents);
        })
        .build()
        .execute(&mut *tx)
        .await?;
    }

    sqlx::query("INSERT INTO users (email, name, role, password_hash) VALUES (?1, ?2, ?3, ?4)")
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
