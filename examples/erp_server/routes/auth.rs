//! Login: checks an email and password against the users table and issues a session token.
//!
//! The password hash is the expensive step of the request. It runs on the blocking thread pool (so it does not stall
//! other requests on the async workers) inside a perfscope phase, which makes it show as `password_hash` in the
//! response's `Server-Timing` header. Attempts are limited per client address and per account, and hashes run a
//! few at a time (module `login_limit`): 429 with `Retry-After` past the budget, 503 when the pool stays busy.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::AppError;
use crate::login_limit::LoginLimits;
use crate::password;

/// Longest email or password accepted; bounds the hashing work an anonymous client can ask for.
const MAX_FIELD_LEN: usize = 1024;

/// The one message for both wrong email and wrong password, so the response does not reveal which accounts exist.
const INVALID_CREDENTIALS: &str = "invalid email or password";

/// Body of `POST /api/auth/login`.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginRequest {
    email: String,
    password: String,
}

/// The user as returned to the client (no hash).
#[derive(Debug, Serialize, sqlx::FromRow)]
pub(crate) struct User {
    id: i64,
    email: String,
    name: String,
    role: String,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    #[sqlx(flatten)]
    user: User,
    password_hash: String,
}

/// Response of a successful login.
#[derive(Debug, Serialize)]
pub(crate) struct LoginResponse {
    token: String,
    user: User,
}

/// `POST /api/auth/login`: 200 with a token, 401 for wrong credentials, 429 past the attempt budgets, 400/415/422
/// for a malformed body.
pub(crate) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Json<LoginResponse>, AppError> {
    // The address first: a flood from one client is refused before its body is even parsed.
    LoginLimits::refuse_slowly(state.login_limits.check_address(peer.ip())).await?;
    let Json(LoginRequest { email, password }) = body?;
    if email.len() > MAX_FIELD_LEN || password.len() > MAX_FIELD_LEN {
        return Err(AppError::Invalid(format!(
            "email and password must be at most {MAX_FIELD_LEN} bytes"
        )));
    }

    LoginLimits::refuse_slowly(state.login_limits.check_account(&email)).await?;

    let row = sqlx::query_as::<_, UserRow>(
        "SELECT id, email, name, role, password_hash FROM users WHERE lower(email) = lower($1)",
    )
    .bind(email.trim())
    .fetch_optional(&state.db)
    .await?;

    let stored_hash = row.as_ref().map(|row| row.password_hash.clone());
    let verified = {
        // Waiting for a permit is part of the phase: it is time the login spends because of hashing.
        let _phase = perfscope::phase("password_hash");
        let permit = state.login_limits.hashing_permit().await?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            match stored_hash {
                Some(stored) => password::verify(&password, &stored),
                None => {
                    password::verify_unknown_user(&password);
                    Ok(false)
                }
            }
        })
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?
    };

    match row {
        Some(UserRow { user, .. }) if verified => {
            let token = state.sessions.issue(user.id);
            tracing::info!(user_id = user.id, "login");
            Ok(Json(LoginResponse { token, user }))
        }
        _ => Err(AppError::Unauthorized(INVALID_CREDENTIALS)),
    }
}
