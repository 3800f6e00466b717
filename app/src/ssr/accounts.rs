//! Accounts: users and their passwords, browser sessions, API tokens, and who is asking.
//!
//! - Passwords are Argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane, the OWASP
//!   minimum), hashed and verified on the blocking pool so a sign-in never stalls the
//!   async workers. An unknown user name costs the same verification as a wrong password.
//! - A session is 32 random bytes in an HttpOnly cookie; the database keeps only its
//!   SHA-256, so a copy of the database signs nobody in. Sessions expire after
//!   [`AuthSettings::session_ttl`]; each sign-in makes a new one (rotation) and drops the
//!   one the browser had; sign-out deletes it; disabling a user deletes all of theirs.
//! - An API token is `opsight_` + 64 hex characters, shown once; only its SHA-256 is stored.
//!   It carries a role no higher than its creator's and can be revoked.
//! - Behind a trusted reverse proxy, a configured header names the user (single sign-on);
//!   it is believed only from the configured proxy addresses, and the user must exist.

use super::audit;
use super::db::Db;
use super::insights::{new_id, timestamp};
use super::ServiceError;
use crate::domain::access::{Me, Role};
use crate::dto::{TokenCreated, TokenView, UserView};
use anyhow::Context;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::net::IpAddr;
use std::time::Duration;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "opsight_session";
/// Passwords shorter than this are refused (NIST SP 800-63B asks for at least 8).
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longer passwords are refused: Argon2 would take them, but nobody types 1 KiB.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// How requests are authenticated (from the configuration).
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// A session's lifetime from sign-in.
    pub session_ttl: Duration,
    /// Mark the cookie `Secure` (the public address is https).
    pub secure_cookies: bool,
    /// Reverse proxies whose user header is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// The header naming the signed-in user, set by a trusted proxy (lower case).
    pub proxy_user_header: String,
    /// The role of requests that carry no credentials (`None`: they must sign in).
    pub anonymous_role: Option<Role>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            trusted_proxies: Vec::new(),
            proxy_user_header: "x-forwarded-user".into(),
            anonymous_role: None,
        }
    }
}

/// How a principal proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Session,
    Token,
    Proxy,
    Anonymous,
}

/// Who is asking: a user (session or proxy), an API token, or an anonymous viewer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub via: Via,
}

impl Principal {
    /// How the audit log and rule history name this principal.
    pub fn actor(&self) -> String {
        match self.via {
            Via::Token => format!("token:{}", self.name),
            Via::Anonymous => "anonymous".into(),
            Via::Session | Via::Proxy => format!("user:{}", self.name),
        }
    }

    pub fn me(&self) -> Me {
        Me {
            name: self.name.clone(),
            role: self.role,
        }
    }
}

/// Why a request's credentials were refused (401).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the API token is not valid (unknown or revoked)")]
    BadToken,
    #[error("the Authorization header must be `Bearer <token>`")]
    BadHeader,
    #[error("{0}")]
    Proxy(String),
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// `bytes` bytes (at most 64) from the operating system's generator, as hex.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = [0u8; 64];
    let buf = &mut buf[..bytes.min(64)];
    getrandom::fill(buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(buf))
}

/// Checks a new password's length (characters, not bytes).
pub fn check_password(password: &str) -> Result<(), ServiceError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(ServiceError::BadRequest(format!(
            "the password is too short: at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(ServiceError::BadRequest(format!(
            "the password is too long: at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

/// Argon2id PHC string of `password`, computed on the blocking pool.
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
    .await
    .context("the hashing task failed")?
}

/// A hash of a password nobody knows, with the same parameters as real ones: verifying
/// against it costs what verifying a real one does. Only its cost matters.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$GMyFzW4Xq3ruOZHcjhlmkDx6zaIX4eMfUkm3VZ6ypNE";

/// Whether `password` matches `hash`. With no hash (unknown user, proxy-only account) a
/// fixed hash is verified instead, so the answer takes as long either way.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| DECOY.to_string());
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        match PasswordHash::new(&hash) {
            Ok(parsed) => argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(e) => {
                tracing::error!(error = %e, "a stored password hash is malformed");
                false
            }
        }
    })
    .await
    .unwrap_or(false)
        && known
}

/// User names: 1–64 characters of letters, digits, `.`, `_`, `-` or `@`, kept lower case.
pub fn clean_username(name: &str) -> Result<String, ServiceError> {
    let name = name.trim().to_lowercase();
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(name)
    } else {
        Err(ServiceError::BadRequest(
            "a user name is 1 to 64 letters, digits, '.', '_', '-' or '@'".into(),
        ))
    }
}

fn user_view(r: &sqlx::any::AnyRow) -> Result<UserView, sqlx::Error> {
    Ok(UserView {
        username: r.try_get(0)?,
        role: Role::parse(&r.try_get::<String, _>(1)?).unwrap_or(Role::Viewer),
        disabled: r.try_get::<i64, _>(2)? != 0,
        has_password: r.try_get::<Option<String>, _>(3)?.is_some(),
        created_at: r.try_get(4)?,
    })
}

/// Adds a user. `password: None` makes an account that signs in only through the proxy.
pub async fn add_user(
    db: &Db,
    username: &str,
    password: Option<&str>,
    role: Role,
    actor: &str,
) -> Result<UserView, ServiceError> {
    let username = clean_username(username)?;
    let hash = match password {
        Some(p) => {
            check_password(p)?;
            Some(hash_password(p.to_string()).await?)
        }
        None => None,
    };
    let now = chrono::Utc::now();
    let mut tx = db.begin().await.context("Failed to start a transaction")?;
    let taken: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(&username)
        .fetch_optional(&mut *tx)
        .await
        .context("Failed to read users")?;
    if taken.is_some() {
        return Err(ServiceError::Conflict(format!(
            "a user named {username} already exists"
        )));
    }
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, role, disabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 0, $5, $5)",
    )
    .bind(new_id(now, "usr"))
    .bind(&username)
    .bind(hash)
    .bind(role.as_str())
    .bind(timestamp(now))
    .execute(&mut *tx)
    .await
    .context("Failed to add the user")?;
    audit::record(
        &mut tx,
        actor,
        "user.create",
        &format!("user:{username}"),
        &format!(
            "role {role}{}",
            if password.is_some() {
                ", with a password"
            } else {
                ", proxy sign-in only"
            }
        ),
    )
    .await?;
    tx.commit().await.context("Failed to add the user")?;
    user(db, &username)
        .await?
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("the new user vanished")))
}

pub async fn user(db: &Db, username: &str) -> Result<Option<UserView>, ServiceError> {
    let row = sqlx::query(
        "SELECT username, role, disabled, password_hash, created_at FROM users WHERE username = $1",
    )
    .bind(username.trim().to_lowercase())
    .fetch_optional(db)
    .await
    .context("Failed to read the user")?;
    Ok(row
        .map(|r| user_view(&r))
        .transpose()
        .context("Failed to read the user")?)
}

pub async fn list_users(db: &Db) -> Result<Vec<UserView>, ServiceError> {
    let rows = sqlx::query(
        "SELECT username, role, disabled, password_hash, created_at FROM users ORDER BY username",
    )
    .fetch_all(db)
    .await
    .context("Failed to list users")?;
    Ok(rows
        .iter()
        .map(user_view)
        .collect::<Result<_, _>>()
        .context("Failed to list users")?)
}

/// What an admin may change about a user.
#[derive(Clone, Debug, Default, serde::Deserialize, schemars::JsonSchema)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

/// Changes a user's role, enabled state or password. Disabling, or a new password, signs
/// the user out everywhere.
pub async fn update_user(
    db: &Db,
    username: &str,
    change: &UserChange,
    actor: &str,
) -> Result<UserView, ServiceError> {
    let username = clean_username(username)?;
    let hash = match &change.password {
        Some(p) => {
            check_password(p)?;
            Some(hash_password(p.clone()).await?)
        }
        None => None,
    };
    let now = timestamp(chrono::Utc::now());
    let mut tx = db.begin().await.context("Failed to start a transaction")?;
    let row = sqlx::query("SELECT id, role, disabled FROM users WHERE username = $1")
        .bind(&username)
        .fetch_optional(&mut *tx)
        .await
        .context("Failed to read users")?;
    let Some(row) = row else {
        return Err(ServiceError::NotFound(format!("no user named {username}")));
    };
    let id: String = row.try_get(0).context("users.id")?;
    let was_admin = row.try_get::<String, _>(1).context("users.role")? == "admin"
        && row.try_get::<i64, _>(2).context("users.disabled")? == 0;
    let mut what = Vec::new();
    if let Some(role) = change.role {
        sqlx::query("UPDATE users SET role = $1, updated_at = $2 WHERE id = $3")
            .bind(role.as_str())
            .bind(&now)
            .bind(&id)
            .execute(&mut *tx)
            .await
            .context("Failed to change the role")?;
        what.push(format!("role → {role}"));
    }
    if let Some(disabled) = change.disabled {
        sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
            .bind(disabled as i64)
            .bind(&now)
            .bind(&id)
            .execute(&mut *tx)
            .await
            .context("Failed to change the user")?;
        what.push(if disabled { "disabled" } else { "enabled" }.to_string());
    }
    if let Some(hash) = hash {
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash)
            .bind(&now)
            .bind(&id)
            .execute(&mut *tx)
            .await
            .context("Failed to set the password")?;
        what.push("password changed".to_string());
    }
    if change.disabled == Some(true) || change.password.is_some() {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .context("Failed to end the user's sessions")?;
    }
    if what.is_empty() {
        return Err(ServiceError::BadRequest(
            "nothing to change: give role, disabled or password".into(),
        ));
    }
    // Nobody could manage users any more: the change is rolled back.
    if was_admin {
        let admins: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM users WHERE role = 'admin' AND disabled = 0",
        )
        .fetch_one(&mut *tx)
        .await
        .context("Failed to count admins")?;
        if admins == 0 {
            return Err(ServiceError::BadRequest(format!(
                "{username} is the last enabled admin: make another user admin first"
            )));
        }
    }
    audit::record(
        &mut tx,
        actor,
        "user.update",
        &format!("user:{username}"),
        &what.join(", "),
    )
    .await?;
    tx.commit().await.context("Failed to change the user")?;
    user(db, &username)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no user named {username}")))
}

/// Signs a user in: on success, the new session's cookie value (shown to nobody else)
/// and who it is. `previous` is the session cookie the browser had, which is dropped.
pub async fn login(
    db: &Db,
    settings: &AuthSettings,
    username: &str,
    password: &str,
    previous: Option<&str>,
) -> Result<Option<(String, Principal)>, ServiceError> {
    let username = username.trim().to_lowercase();
    let row =
        sqlx::query("SELECT id, password_hash, role, disabled FROM users WHERE username = $1")
            .bind(&username)
            .fetch_optional(db)
            .await
            .context("Failed to read the user")?;
    let (id, hash, role, disabled) = match &row {
        Some(r) => (
            r.try_get::<String, _>(0).context("users.id")?,
            r.try_get::<Option<String>, _>(1)
                .context("users.password_hash")?,
            r.try_get::<String, _>(2).context("users.role")?,
            r.try_get::<i64, _>(3).context("users.disabled")? != 0,
        ),
        None => (String::new(), None, String::new(), true),
    };
    // Verify even when the user is unknown or disabled: the same time either way.
    let password_ok = verify_password(password.to_string(), hash).await;
    if !password_ok || disabled {
        return Ok(None);
    }
    let role = Role::parse(&role).map_err(|e| anyhow::anyhow!("users.role: {e}"))?;
    let secret = random_hex(32)?;
    let now = chrono::Utc::now();
    let expires = now
        + chrono::Duration::from_std(settings.session_ttl).unwrap_or(chrono::Duration::hours(12));
    let mut tx = db.begin().await.context("Failed to start a transaction")?;
    if let Some(previous) = previous {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(sha256_hex(previous))
            .execute(&mut *tx)
            .await
            .context("Failed to drop the previous session")?;
    }
    // Expired sessions go as new ones come (indexed on expires_at).
    sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
        .bind(timestamp(now))
        .execute(&mut *tx)
        .await
        .context("Failed to drop expired sessions")?;
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, created_at, expires_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $3)",
    )
    .bind(sha256_hex(&secret))
    .bind(&id)
    .bind(timestamp(now))
    .bind(timestamp(expires))
    .execute(&mut *tx)
    .await
    .context("Failed to start the session")?;
    tx.commit().await.context("Failed to start the session")?;
    Ok(Some((
        secret,
        Principal {
            name: username,
            role,
            via: Via::Session,
        },
    )))
}

/// Ends a session (sign-out). Unknown sessions are ignored.
pub async fn logout(db: &Db, cookie: &str) -> Result<(), ServiceError> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(sha256_hex(cookie))
        .execute(db)
        .await
        .context("Failed to end the session")?;
    Ok(())
}

/// The user of a live session: not expired, user not disabled.
pub async fn session(db: &Db, cookie: &str) -> Result<Option<Principal>, ServiceError> {
    let row = sqlx::query(
        "SELECT u.username, u.role FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.id_hash = $1 AND s.expires_at > $2 AND u.disabled = 0",
    )
    .bind(sha256_hex(cookie))
    .bind(timestamp(chrono::Utc::now()))
    .fetch_optional(db)
    .await
    .context("Failed to read the session")?;
    principal_from(row.as_ref(), Via::Session)
}

fn principal_from(
    row: Option<&sqlx::any::AnyRow>,
    via: Via,
) -> Result<Option<Principal>, ServiceError> {
    let Some(r) = row else { return Ok(None) };
    let name: String = r.try_get(0).context("principal name")?;
    let role: String = r.try_get(1).context("principal role")?;
    let role = Role::parse(&role).map_err(|e| anyhow::anyhow!("stored role: {e}"))?;
    Ok(Some(Principal { name, role, via }))
}

/// An enabled user named by a trusted proxy.
async fn proxy_user(db: &Db, username: &str) -> Result<Option<Principal>, ServiceError> {
    let row = sqlx::query("SELECT username, role FROM users WHERE username = $1 AND disabled = 0")
        .bind(username.trim().to_lowercase())
        .fetch_optional(db)
        .await
        .context("Failed to read the user")?;
    principal_from(row.as_ref(), Via::Proxy)
}

/// A token's prefix shown in lists: enough to tell tokens apart, useless to an attacker.
fn token_prefix(secret: &str) -> String {
    secret.chars().take(14).collect()
}

/// Creates an API token with `role` (at most the creator's). The secret is returned once.
pub async fn create_token(
    db: &Db,
    name: &str,
    role: Role,
    creator: &str,
    creator_role: Role,
) -> Result<TokenCreated, ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ServiceError::BadRequest(
            "a token needs a name of 1 to 64 characters (what uses it)".into(),
        ));
    }
    if !creator_role.can(role) {
        return Err(ServiceError::BadRequest(format!(
            "a token cannot have more rights than its creator ({creator_role})"
        )));
    }
    let secret = format!("opsight_{}", random_hex(32)?);
    let now = chrono::Utc::now();
    let id = new_id(now, "tok");
    let mut tx = db.begin().await.context("Failed to start a transaction")?;
    sqlx::query(
        "INSERT INTO api_tokens (id, name, token_hash, prefix, role, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(name)
    .bind(sha256_hex(&secret))
    .bind(token_prefix(&secret))
    .bind(role.as_str())
    .bind(creator)
    .bind(timestamp(now))
    .execute(&mut *tx)
    .await
    .context("Failed to store the token")?;
    audit::record(
        &mut tx,
        creator,
        "token.create",
        &format!("token:{name}"),
        &format!("role {role}, id {id}"),
    )
    .await?;
    tx.commit().await.context("Failed to store the token")?;
    Ok(TokenCreated {
        token: TokenView {
            id,
            name: name.to_string(),
            prefix: token_prefix(&secret),
            role,
            created_by: creator.to_string(),
            created_at: timestamp(now),
            last_used_at: None,
            revoked_at: None,
        },
        secret,
    })
}

pub async fn list_tokens(db: &Db) -> Result<Vec<TokenView>, ServiceError> {
    let rows = sqlx::query(
        "SELECT id, name, prefix, role, created_by, created_at, last_used_at, revoked_at \
         FROM api_tokens ORDER BY created_at DESC",
    )
    .fetch_all(db)
    .await
    .context("Failed to list tokens")?;
    let view = |r: &sqlx::any::AnyRow| -> Result<TokenView, sqlx::Error> {
        Ok(TokenView {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            prefix: r.try_get(2)?,
            role: Role::parse(&r.try_get::<String, _>(3)?).unwrap_or(Role::Viewer),
            created_by: r.try_get(4)?,
            created_at: r.try_get(5)?,
            last_used_at: r.try_get(6)?,
            revoked_at: r.try_get(7)?,
        })
    };
    Ok(rows
        .iter()
        .map(view)
        .collect::<Result<_, _>>()
        .context("Failed to list tokens")?)
}

/// Revokes a token at once (its next request gets 401).
pub async fn revoke_token(db: &Db, id: &str, actor: &str) -> Result<(), ServiceError> {
    let mut tx = db.begin().await.context("Failed to start a transaction")?;
    let name: Option<String> =
        sqlx::query_scalar("SELECT name FROM api_tokens WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .context("Failed to read the token")?;
    let Some(name) = name else {
        return Err(ServiceError::NotFound(format!(
            "no active token with id {id}"
        )));
    };
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
        .bind(timestamp(chrono::Utc::now()))
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("Failed to revoke the token")?;
    audit::record(&mut tx, actor, "token.revoke", &format!("token:{name}"), id).await?;
    tx.commit().await.context("Failed to revoke the token")?;
    Ok(())
}

/// The principal of an API token, or `None` when it is unknown or revoked.
pub async fn token(db: &Db, secret: &str) -> Result<Option<Principal>, ServiceError> {
    let hash = sha256_hex(secret);
    let row = sqlx::query(
        "SELECT name, role, last_used_at FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(&hash)
    .fetch_optional(db)
    .await
    .context("Failed to read the token")?;
    let principal = principal_from(row.as_ref(), Via::Token)?;
    // Last use, to the minute: enough to find unused tokens. Written only when it is
    // older than that, so most requests only read (a write would queue behind SQLite's
    // single writer).
    let now = chrono::Utc::now();
    let stale = timestamp(now - chrono::Duration::minutes(1));
    let last: Option<String> = row
        .as_ref()
        .and_then(|r| r.try_get::<Option<String>, _>(2).ok())
        .flatten();
    if principal.is_some() && last.is_none_or(|l| l < stale) {
        let _ = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
            .bind(timestamp(now))
            .bind(&hash)
            .execute(db)
            .await;
    }
    Ok(principal)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Who is asking, from (in order) a bearer token, a trusted proxy's user header, the
/// session cookie; `Ok(None)` when nobody is signed in (the anonymous role applies).
/// A bad bearer token is an error rather than anonymous: a machine client should learn
/// that its token stopped working.
pub async fn authenticate(
    db: &Db,
    settings: &AuthSettings,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Option<Principal>, AuthOutcome> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::BadHeader)?;
        let secret = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or(AuthError::BadHeader)?;
        return match token(db, secret).await? {
            Some(p) => Ok(Some(p)),
            None => Err(AuthError::BadToken.into()),
        };
    }
    if let Some(peer) = peer.filter(|p| settings.trusted_proxies.contains(p)) {
        if let Some(user) = headers.get(settings.proxy_user_header.as_str()) {
            let user = user
                .to_str()
                .map_err(|_| AuthError::Proxy("the proxy's user header is not text".into()))?;
            return match proxy_user(db, user).await? {
                Some(p) => Ok(Some(p)),
                None => Err(AuthError::Proxy(format!(
                    "no active Opsight account for {:?}; ask an admin to add one (trusted proxy {peer})",
                    user.trim()
                ))
                .into()),
            };
        }
    }
    if let Some(cookie) = cookie(headers, SESSION_COOKIE) {
        return Ok(session(db, cookie).await?);
    }
    Ok(None)
}

/// Why [`authenticate`] failed: bad credentials (401) or the database (500).
#[derive(Debug)]
pub enum AuthOutcome {
    Refused(AuthError),
    Failed(ServiceError),
}

impl From<AuthError> for AuthOutcome {
    fn from(e: AuthError) -> Self {
        AuthOutcome::Refused(e)
    }
}

impl From<ServiceError> for AuthOutcome {
    fn from(e: ServiceError) -> Self {
        AuthOutcome::Failed(e)
    }
}

/// The principal the guard attached to the current request (server functions, pages).
/// `None` outside a request, or for an anonymous request.
pub fn current() -> Option<Principal> {
    leptos::prelude::use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>().cloned())
}

/// How the audit log names whoever made the current request (the guard has already
/// checked the route's policy).
pub fn actor() -> String {
    current().map_or_else(|| "anonymous".into(), |p| p.actor())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=1; opsight_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn user_names_are_checked() {
        assert_eq!(clean_username(" Alice ").unwrap(), "alice");
        assert!(clean_username("").is_err());
        assert!(clean_username("a b").is_err());
        assert!(clean_username("<script>").is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("long enough!").is_ok());
    }

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse".into(), Some(h.clone())).await);
        assert!(!verify_password("wrong horse".into(), Some(h)).await);
        assert!(!verify_password("anything".into(), None).await);
        // The decoy is a well-formed hash with the real parameters (else an unknown user
        // would be answered without hashing, faster than a known one).
        use argon2::password_hash::PasswordHash;
        let decoy = PasswordHash::new(DECOY).unwrap();
        let real = hash_password("x".repeat(12)).await.unwrap();
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(decoy.algorithm, real.algorithm);
        assert_eq!(decoy.params, real.params);
    }
}
