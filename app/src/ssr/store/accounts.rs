//! Users, browser sessions and API tokens. Secrets are never stored: sessions and tokens
//! only as their SHA-256, passwords only as Argon2id PHC strings.

use super::{decode, Ctx, Exec, Result};
use crate::domain::access::Role;
use crate::dto::{TokenView, UserView};

#[derive(sqlx::FromRow)]
struct UserRow {
    username: String,
    role: String,
    disabled: i64,
    password_hash: Option<String>,
    created_at: String,
    sites: Option<String>,
}

impl UserRow {
    fn into_view(self) -> Result<UserView> {
        Ok(UserView {
            role: decode("users.role", Role::parse(&self.role))?,
            username: self.username,
            disabled: self.disabled != 0,
            has_password: self.password_hash.is_some(),
            created_at: self.created_at,
            sites: self.sites,
        })
    }
}

const USER_COLS: &str = "username, role, disabled, password_hash, created_at, sites";

pub async fn user<'e>(ex: impl Exec<'e>, username: &str) -> Result<Option<UserView>> {
    let row: Option<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLS} FROM users WHERE username = $1"
    )))
    .bind(username.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the user")?;
    row.map(UserRow::into_view).transpose()
}

pub async fn users<'e>(ex: impl Exec<'e>) -> Result<Vec<UserView>> {
    let rows: Vec<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLS} FROM users ORDER BY username"
    )))
    .fetch_all(ex)
    .await
    .ctx("Failed to list users")?;
    rows.into_iter().map(UserRow::into_view).collect()
}

pub async fn insert_user<'e>(
    ex: impl Exec<'e>,
    id: &str,
    username: &str,
    password_hash: Option<String>,
    role: Role,
    sites: Option<String>,
    now: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, role, disabled, created_at, updated_at, sites) \
         VALUES ($1, $2, $3, $4, 0, $5, $5, $6)",
    )
    .bind(id.to_string())
    .bind(username.to_string())
    .bind(password_hash)
    .bind(role.as_str())
    .bind(now.to_string())
    .bind(sites)
    .execute(ex)
    .await
    .ctx("Failed to add the user")?;
    Ok(())
}

/// What a sign-in or a change needs to know about a user.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Credentials {
    pub id: String,
    pub password_hash: Option<String>,
    pub role: String,
    pub disabled: i64,
    /// Its site grant (none: every site).
    pub sites: Option<String>,
}

pub async fn credentials<'e>(ex: impl Exec<'e>, username: &str) -> Result<Option<Credentials>> {
    sqlx::query_as("SELECT id, password_hash, role, disabled, sites FROM users WHERE username = $1")
        .bind(username.to_string())
        .fetch_optional(ex)
        .await
        .ctx("Failed to read the user")
}

/// One change to a user's row.
pub enum UserUpdate {
    Role(Role),
    Disabled(bool),
    PasswordHash(String),
    /// A new site grant (`None`: every site).
    Sites(Option<String>),
}

pub async fn update_user<'e>(
    ex: impl Exec<'e>,
    id: &str,
    change: UserUpdate,
    now: &str,
) -> Result<()> {
    let q = match change {
        UserUpdate::Role(role) => {
            sqlx::query("UPDATE users SET role = $1, updated_at = $2 WHERE id = $3")
                .bind(role.as_str())
        }
        UserUpdate::Disabled(d) => {
            sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
                .bind(i64::from(d))
        }
        UserUpdate::PasswordHash(h) => {
            sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                .bind(h)
        }
        UserUpdate::Sites(sites) => {
            sqlx::query("UPDATE users SET sites = $1, updated_at = $2 WHERE id = $3").bind(sites)
        }
    };
    q.bind(now.to_string())
        .bind(id.to_string())
        .execute(ex)
        .await
        .ctx("Failed to change the user")?;
    Ok(())
}

/// Enabled admins (an admin may not disable or demote the last one).
pub async fn count_admins<'e>(ex: impl Exec<'e>) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM users WHERE role = $1 AND disabled = 0",
    )
    .bind(Role::Admin.as_str())
    .fetch_one(ex)
    .await
    .ctx("Failed to count admins")
}

/// Signs a user out everywhere.
pub async fn delete_sessions_of<'e>(ex: impl Exec<'e>, user_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id.to_string())
        .execute(ex)
        .await
        .ctx("Failed to end the user's sessions")?;
    Ok(())
}

pub async fn delete_session<'e>(ex: impl Exec<'e>, id_hash: &str) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(id_hash.to_string())
        .execute(ex)
        .await
        .ctx("Failed to end the session")?;
    Ok(())
}

/// Drops expired sessions (indexed on `expires_at`), as new ones come.
pub async fn delete_expired_sessions<'e>(ex: impl Exec<'e>, now: &str) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
        .bind(now.to_string())
        .execute(ex)
        .await
        .ctx("Failed to drop expired sessions")?;
    Ok(())
}

pub async fn insert_session<'e>(
    ex: impl Exec<'e>,
    id_hash: &str,
    user_id: &str,
    now: &str,
    expires_at: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, created_at, expires_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $3)",
    )
    .bind(id_hash.to_string())
    .bind(user_id.to_string())
    .bind(now.to_string())
    .bind(expires_at.to_string())
    .execute(ex)
    .await
    .ctx("Failed to start the session")?;
    Ok(())
}

/// Who a session, proxy header or token stands for: a name, a role and a site grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub name: String,
    pub role: Role,
    /// The site grant (none: every site).
    pub sites: Option<String>,
}

#[derive(sqlx::FromRow)]
struct HolderRow {
    name: String,
    role: String,
    sites: Option<String>,
}

fn holder(row: Option<HolderRow>) -> Result<Option<Holder>> {
    row.map(|r| {
        Ok(Holder {
            role: decode("stored role", Role::parse(&r.role))?,
            name: r.name,
            sites: r.sites,
        })
    })
    .transpose()
}

/// The user of a live session: not expired, user not disabled.
pub async fn session_user<'e>(
    ex: impl Exec<'e>,
    id_hash: &str,
    now: &str,
) -> Result<Option<Holder>> {
    let row = sqlx::query_as(
        "SELECT u.username AS name, u.role, u.sites FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.id_hash = $1 AND s.expires_at > $2 AND u.disabled = 0",
    )
    .bind(id_hash.to_string())
    .bind(now.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the session")?;
    holder(row)
}

/// An enabled user by name (a trusted proxy's sign-on).
pub async fn enabled_user<'e>(ex: impl Exec<'e>, username: &str) -> Result<Option<Holder>> {
    let row = sqlx::query_as(
        "SELECT username AS name, role, sites FROM users WHERE username = $1 AND disabled = 0",
    )
    .bind(username.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the user")?;
    holder(row)
}

/// A token to store: its hash and prefix, never the secret.
pub struct NewToken<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub prefix: &'a str,
    pub role: Role,
    pub created_by: &'a str,
    pub created_at: &'a str,
    pub sites: Option<&'a str>,
}

pub async fn insert_token<'e>(ex: impl Exec<'e>, t: &NewToken<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_tokens (id, name, token_hash, prefix, role, created_by, created_at, sites) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(t.id.to_string())
    .bind(t.name.to_string())
    .bind(t.token_hash.to_string())
    .bind(t.prefix.to_string())
    .bind(t.role.as_str())
    .bind(t.created_by.to_string())
    .bind(t.created_at.to_string())
    .bind(t.sites.map(str::to_string))
    .execute(ex)
    .await
    .ctx("Failed to store the token")?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    name: String,
    prefix: String,
    role: String,
    created_by: String,
    created_at: String,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
    sites: Option<String>,
}

pub async fn tokens<'e>(ex: impl Exec<'e>) -> Result<Vec<TokenView>> {
    let rows: Vec<TokenRow> = sqlx::query_as(
        "SELECT id, name, prefix, role, created_by, created_at, last_used_at, revoked_at, sites \
         FROM api_tokens ORDER BY created_at DESC",
    )
    .fetch_all(ex)
    .await
    .ctx("Failed to list tokens")?;
    rows.into_iter()
        .map(|r| {
            Ok(TokenView {
                role: decode("api_tokens.role", Role::parse(&r.role))?,
                id: r.id,
                name: r.name,
                prefix: r.prefix,
                created_by: r.created_by,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
                revoked_at: r.revoked_at,
                sites: r.sites,
            })
        })
        .collect()
}

/// The name of an active (not revoked) token.
pub async fn active_token_name<'e>(ex: impl Exec<'e>, id: &str) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT name FROM api_tokens WHERE id = $1 AND revoked_at IS NULL")
        .bind(id.to_string())
        .fetch_optional(ex)
        .await
        .ctx("Failed to read the token")
}

pub async fn revoke_token<'e>(ex: impl Exec<'e>, id: &str, now: &str) -> Result<()> {
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
        .bind(now.to_string())
        .bind(id.to_string())
        .execute(ex)
        .await
        .ctx("Failed to revoke the token")?;
    Ok(())
}

/// An active token by its hash: who it stands for, and when it was last used.
pub async fn token_by_hash<'e>(
    ex: impl Exec<'e>,
    hash: &str,
) -> Result<Option<(Holder, Option<String>)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        name: String,
        role: String,
        sites: Option<String>,
        last_used_at: Option<String>,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT name, role, sites, last_used_at FROM api_tokens \
         WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash.to_string())
    .fetch_optional(ex)
    .await
    .ctx("Failed to read the token")?;
    row.map(|r| {
        Ok((
            Holder {
                role: decode("api_tokens.role", Role::parse(&r.role))?,
                name: r.name,
                sites: r.sites,
            },
            r.last_used_at,
        ))
    })
    .transpose()
}

pub async fn touch_token<'e>(ex: impl Exec<'e>, hash: &str, now: &str) -> Result<()> {
    sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
        .bind(now.to_string())
        .bind(hash.to_string())
        .execute(ex)
        .await
        .ctx("Failed to record the token's use")?;
    Ok(())
}
