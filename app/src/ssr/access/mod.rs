//! Access: who is asking and what they may change about accounts.
//!
//! - this module: users and their passwords, browser sessions, API tokens, and who is
//!   asking ([`Accounts::authenticate`]).
//! - [`limits`]: rate limits on agent calls, per principal and per replica.
//! - [`throttle`]: sign-in attempts per account and per client address, and the cap on
//!   concurrent password hashing.
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
//!
//! Every change here writes the audit log in the same transaction.

pub mod limits;
pub mod throttle;

use crate::domain::access::{grant_text, parse_grant, Me, Reach, Role};
use crate::dto::{
    AuditEntry, AuditQuery, NewToken, NewUser, TokenCreated, TokenView, UserChange, UserView,
};
use crate::ssr::clock::{self, new_id};
use crate::ssr::error::ServiceError;
use crate::ssr::store::accounts::{self as store_accounts, UserUpdate};
use crate::ssr::store::{self, audit, Db};
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use throttle::{SignInLimits, SignInRefused, SignInThrottle};

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
    /// Sign-in attempts allowed per account and per client address.
    pub sign_in_limits: SignInLimits,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            trusted_proxies: Vec::new(),
            proxy_user_header: "x-forwarded-user".into(),
            anonymous_role: None,
            sign_in_limits: SignInLimits::default(),
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
    /// The command line, run by whoever runs the server (an admin).
    Cli,
}

/// Who is asking: a user (session or proxy), an API token, or an anonymous viewer; with
/// the sites it may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub via: Via,
    pub reach: Reach,
}

impl Principal {
    /// How the audit log and rule history name this principal.
    pub fn actor(&self) -> String {
        match self.via {
            Via::Token => format!("token:{}", self.name),
            Via::Anonymous => "anonymous".into(),
            Via::Cli => "cli".into(),
            Via::Session | Via::Proxy => format!("user:{}", self.name),
        }
    }

    pub fn me(&self) -> Me {
        Me {
            name: self.name.clone(),
            role: self.role,
            sites: self.reach.sites(),
        }
    }

    /// The command line: an admin (it runs with the server's own database access).
    pub fn cli() -> Principal {
        Principal {
            name: "cli".into(),
            role: Role::Admin,
            via: Via::Cli,
            reach: Reach::All,
        }
    }

    /// The anonymous principal of a wall screen (`OPSIGHT_ANONYMOUS_ROLE`).
    pub fn anonymous(role: Role) -> Principal {
        Principal {
            name: "anonymous".into(),
            role,
            via: Via::Anonymous,
            reach: Reach::All,
        }
    }
}

/// What a request's principal may see: everything without one (the command line, the
/// scheduler, public routes).
pub fn reach_of(principal: Option<&Principal>) -> Reach {
    principal.map_or(Reach::All, |p| p.reach.clone())
}

/// The actor of a request without a principal (public routes).
pub fn actor_of(principal: Option<&Principal>) -> String {
    principal.map_or_else(|| "anonymous".into(), Principal::actor)
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

/// Why [`Accounts::authenticate`] failed: bad credentials (401) or the database (500).
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

impl From<store::StoreError> for AuthOutcome {
    fn from(e: store::StoreError) -> Self {
        AuthOutcome::Failed(e.into())
    }
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

/// Argon2id PHC string of `password`, computed on the blocking pool in one of the
/// process's hashing slots (`Busy` when none frees up in time).
pub async fn hash_password(password: String) -> Result<String, ServiceError> {
    // The slot goes into the hashing task: it is held until the hash is done even if the
    // request goes away meanwhile.
    let slot = throttle::hashing_slot().await?;
    let hash = tokio::task::spawn_blocking(move || {
        let _slot = slot;
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
    .map_err(|e| anyhow::anyhow!("the hashing task failed: {e}"))??;
    Ok(hash)
}

/// A hash of a password nobody knows, with the same parameters as real ones: verifying
/// against it costs what verifying a real one does. Only its cost matters.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$GMyFzW4Xq3ruOZHcjhlmkDx6zaIX4eMfUkm3VZ6ypNE";

/// Whether `password` matches `hash`. With no hash (unknown user, proxy-only account) a
/// fixed hash is verified instead, so the answer takes as long either way. Runs in one of
/// the process's hashing slots (`Busy` when none frees up in time).
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ServiceError> {
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| DECOY.to_string());
    let slot = throttle::hashing_slot().await?;
    let matches = tokio::task::spawn_blocking(move || {
        let _slot = slot;
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
    .unwrap_or(false);
    Ok(matches && known)
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

/// A token's prefix shown in lists: enough to tell tokens apart, useless to an attacker.
fn token_prefix(secret: &str) -> String {
    secret.chars().take(14).collect()
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

/// The accounts capability.
#[derive(Clone, Debug)]
pub struct Accounts {
    db: Db,
    settings: Arc<AuthSettings>,
    sign_ins: Arc<SignInThrottle>,
}

/// How a sign-in ended.
#[derive(Debug)]
pub enum SignIn {
    /// The new session's cookie value (shown to nobody else) and who it is.
    Accepted { secret: String, who: Principal },
    /// A wrong name or password, or a disabled account (which of them is not said).
    Refused,
    /// Too many attempts for the account or from the address: 429, nothing checked.
    Throttled(SignInRefused),
}

impl Accounts {
    pub fn new(db: Db, settings: AuthSettings) -> Accounts {
        Accounts {
            db,
            sign_ins: Arc::new(SignInThrottle::new(settings.sign_in_limits)),
            settings: Arc::new(settings),
        }
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Adds a user. No password makes an account that signs in only through the proxy.
    pub async fn add_user(&self, input: NewUser, actor: &str) -> Result<UserView, ServiceError> {
        let username = clean_username(&input.username)?;
        let sites = self.check_grant(input.sites.as_deref()).await?;
        let hash = match &input.password {
            Some(p) => {
                check_password(p)?;
                Some(hash_password(p.clone()).await?)
            }
            None => None,
        };
        let now = chrono::Utc::now();
        let mut tx = store::begin(&self.db).await?;
        if store_accounts::credentials(&mut *tx, &username)
            .await?
            .is_some()
        {
            return Err(ServiceError::Conflict(format!(
                "a user named {username} already exists"
            )));
        }
        store_accounts::insert_user(
            &mut *tx,
            &new_id(now, "usr"),
            &username,
            hash,
            input.role,
            sites.clone(),
            &clock::timestamp(now),
        )
        .await?;
        audit::record(
            &mut *tx,
            actor,
            "user.create",
            &format!("user:{username}"),
            &format!(
                "role {}{}{}",
                input.role,
                if input.password.is_some() {
                    ", with a password"
                } else {
                    ", proxy sign-in only"
                },
                sites
                    .as_deref()
                    .map(|s| format!(", sites {s}"))
                    .unwrap_or_default()
            ),
        )
        .await?;
        store::commit(tx).await?;
        self.user(&username)
            .await?
            .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("the new user vanished")))
    }

    pub async fn user(&self, username: &str) -> Result<Option<UserView>, ServiceError> {
        Ok(store_accounts::user(&self.db, &username.trim().to_lowercase()).await?)
    }

    pub async fn users(&self) -> Result<Vec<UserView>, ServiceError> {
        Ok(store_accounts::users(&self.db).await?)
    }

    /// Changes a user's role, enabled state or password. Disabling, or a new password,
    /// signs the user out everywhere. The last enabled admin can be neither disabled nor
    /// demoted: the whole change is refused.
    pub async fn update_user(
        &self,
        username: &str,
        change: UserChange,
        actor: &str,
    ) -> Result<UserView, ServiceError> {
        let username = clean_username(username)?;
        let sites = match change.sites.as_deref() {
            Some(text) => Some(self.check_grant(Some(text)).await?),
            None => None,
        };
        let hash = match &change.password {
            Some(p) => {
                check_password(p)?;
                Some(hash_password(p.clone()).await?)
            }
            None => None,
        };
        let now = clock::now();
        let mut tx = store::begin(&self.db).await?;
        let Some(user) = store_accounts::credentials(&mut *tx, &username).await? else {
            return Err(ServiceError::NotFound(format!("no user named {username}")));
        };
        let was_admin = user.role == Role::Admin.as_str() && user.disabled == 0;
        let mut what = Vec::new();
        if let Some(role) = change.role {
            store_accounts::update_user(&mut *tx, &user.id, UserUpdate::Role(role), &now).await?;
            what.push(format!("role → {role}"));
        }
        if let Some(disabled) = change.disabled {
            store_accounts::update_user(&mut *tx, &user.id, UserUpdate::Disabled(disabled), &now)
                .await?;
            what.push(if disabled { "disabled" } else { "enabled" }.to_string());
        }
        if let Some(hash) = hash {
            store_accounts::update_user(&mut *tx, &user.id, UserUpdate::PasswordHash(hash), &now)
                .await?;
            what.push("password changed".to_string());
        }
        if let Some(sites) = sites {
            what.push(match &sites {
                Some(s) => format!("sites → {s}"),
                None => "sites → all".to_string(),
            });
            store_accounts::update_user(&mut *tx, &user.id, UserUpdate::Sites(sites), &now).await?;
        }
        if change.disabled == Some(true) || change.password.is_some() {
            store_accounts::delete_sessions_of(&mut *tx, &user.id).await?;
        }
        if what.is_empty() {
            return Err(ServiceError::BadRequest(
                "nothing to change: give role, disabled, password or sites".into(),
            ));
        }
        // Nobody could manage users any more: the change is rolled back.
        if was_admin && store_accounts::count_admins(&mut *tx).await? == 0 {
            return Err(ServiceError::BadRequest(format!(
                "{username} is the last enabled admin: make another user admin first"
            )));
        }
        audit::record(
            &mut *tx,
            actor,
            "user.update",
            &format!("user:{username}"),
            &what.join(", "),
        )
        .await?;
        store::commit(tx).await?;
        self.user(&username)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no user named {username}")))
    }

    /// Signs a user in. `previous` is the session cookie the browser had, which is
    /// dropped; `client` the client's address ([`throttle::client_address`]), whose
    /// attempts are counted with the account's.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        previous: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<SignIn, ServiceError> {
        let username = username.trim().to_lowercase();
        if let Err(refused) = self
            .sign_ins
            .admit(&username, client, std::time::Instant::now())
        {
            crate::ssr::metrics::count_sign_in_refused(refused.limit());
            return Ok(SignIn::Throttled(refused));
        }
        let user = store_accounts::credentials(&self.db, &username).await?;
        let (hash, disabled) = match &user {
            Some(u) => (u.password_hash.clone(), u.disabled != 0),
            None => (None, true),
        };
        // Verify even when the user is unknown or disabled: the same time either way.
        let password_ok = verify_password(password.to_string(), hash).await?;
        let Some(user) = user.filter(|_| password_ok && !disabled) else {
            return Ok(SignIn::Refused);
        };
        self.sign_ins.succeeded(&username, client);
        let role = Role::parse(&user.role).map_err(|e| anyhow::anyhow!("users.role: {e}"))?;
        let reach = self.reach(user.sites.as_deref()).await?;
        let secret = random_hex(32)?;
        let now = chrono::Utc::now();
        let expires = now
            + chrono::Duration::from_std(self.settings.session_ttl)
                .unwrap_or(chrono::Duration::hours(12));
        let mut tx = store::begin(&self.db).await?;
        if let Some(previous) = previous {
            store_accounts::delete_session(&mut *tx, &sha256_hex(previous)).await?;
        }
        store_accounts::delete_expired_sessions(&mut *tx, &clock::timestamp(now)).await?;
        store_accounts::insert_session(
            &mut *tx,
            &sha256_hex(&secret),
            &user.id,
            &clock::timestamp(now),
            &clock::timestamp(expires),
        )
        .await?;
        store::commit(tx).await?;
        Ok(SignIn::Accepted {
            secret,
            who: Principal {
                name: username,
                role,
                via: Via::Session,
                reach,
            },
        })
    }

    /// Ends a session (sign-out). Unknown sessions are ignored.
    pub async fn logout(&self, cookie: &str) -> Result<(), ServiceError> {
        Ok(store_accounts::delete_session(&self.db, &sha256_hex(cookie)).await?)
    }

    /// The user of a live session: not expired, user not disabled.
    pub async fn session(&self, cookie: &str) -> Result<Option<Principal>, ServiceError> {
        match store_accounts::session_user(&self.db, &sha256_hex(cookie), &clock::now()).await? {
            Some(holder) => Ok(Some(self.principal(holder, Via::Session).await?)),
            None => Ok(None),
        }
    }

    /// The principal a stored user or token stands for, its grant resolved against the
    /// sites as they are now.
    async fn principal(
        &self,
        holder: store_accounts::Holder,
        via: Via,
    ) -> Result<Principal, ServiceError> {
        Ok(Principal {
            reach: self.reach(holder.sites.as_deref()).await?,
            name: holder.name,
            role: holder.role,
            via,
        })
    }

    /// The sites a stored grant covers now (none stored: every site).
    async fn reach(&self, grant: Option<&str>) -> Result<Reach, ServiceError> {
        let grant = match grant.map(parse_grant) {
            None => return Ok(Reach::All),
            // Never stored by Opsight (an empty grant is stored as NULL): an empty one
            // written by hand limits to nothing rather than to everything.
            Some(Ok(None)) => return Ok(Reach::Sites(Default::default())),
            Some(Ok(Some(g))) => g,
            // A grant that no longer parses limits to nothing rather than to everything.
            Some(Err(e)) => {
                tracing::error!(error = %e, "a stored site grant does not parse");
                return Ok(Reach::Sites(Default::default()));
            }
        };
        Ok(Reach::resolve_existing(&grant, &self.site_regions().await?))
    }

    /// Every site as (code, region).
    async fn site_regions(&self) -> Result<Vec<(String, String)>, ServiceError> {
        Ok(store::facts::sites(&self.db)
            .await?
            .into_iter()
            .map(|s| (s.code, s.region))
            .collect())
    }

    /// A grant as given by an admin, checked against the sites (unknown ones are a 400)
    /// and normalised; `None` for no grant (every site).
    async fn check_grant(&self, text: Option<&str>) -> Result<Option<String>, ServiceError> {
        let Some(grant) = text
            .map(parse_grant)
            .transpose()
            .map_err(|e| ServiceError::BadRequest(format!("sites: {e}")))?
            .flatten()
        else {
            return Ok(None);
        };
        Reach::resolve(&grant, &self.site_regions().await?)
            .map_err(|e| ServiceError::BadRequest(format!("sites: {e}")))?;
        Ok(Some(grant_text(&grant)))
    }

    /// Creates an API token with `input.role` (at most the creator's). The secret is
    /// returned once.
    pub async fn create_token(
        &self,
        input: NewToken,
        creator: &Principal,
    ) -> Result<TokenCreated, ServiceError> {
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(ServiceError::BadRequest(
                "a token needs a name of 1 to 64 characters (what uses it)".into(),
            ));
        }
        if !creator.role.can(input.role) {
            return Err(ServiceError::BadRequest(format!(
                "a token cannot have more rights than its creator ({})",
                creator.role
            )));
        }
        // Its sites: those asked for, within the creator's; none asked, the creator's.
        let sites = match (
            self.check_grant(input.sites.as_deref()).await?,
            &creator.reach,
        ) {
            (None, Reach::All) => None,
            // (An empty grant would read as "every site": a creator reaching none makes none.)
            (None, Reach::Sites(own)) if own.is_empty() => {
                return Err(ServiceError::BadRequest(
                    "your access covers no site, so a token of yours could reach none".into(),
                ))
            }
            (None, Reach::Sites(own)) => Some(own.iter().cloned().collect::<Vec<_>>().join(",")),
            (Some(asked), Reach::All) => Some(asked),
            // A limited creator's token keeps the codes resolved now: a region that grows
            // later must not take the token beyond its creator.
            (Some(asked), reach) => {
                let wanted = self.reach(Some(&asked)).await?;
                if wanted.within(reach) != wanted {
                    return Err(ServiceError::BadRequest(
                        "a token cannot reach sites its creator does not".into(),
                    ));
                }
                wanted.sites().map(|codes| codes.join(","))
            }
        };
        let secret = format!("opsight_{}", random_hex(32)?);
        let now = chrono::Utc::now();
        let id = new_id(now, "tok");
        let created_by = creator.actor();
        let created_at = clock::timestamp(now);
        let mut tx = store::begin(&self.db).await?;
        store_accounts::insert_token(
            &mut *tx,
            &store_accounts::NewToken {
                id: &id,
                name,
                token_hash: &sha256_hex(&secret),
                prefix: &token_prefix(&secret),
                role: input.role,
                created_by: &created_by,
                created_at: &created_at,
                sites: sites.as_deref(),
            },
        )
        .await?;
        audit::record(
            &mut *tx,
            &created_by,
            "token.create",
            &format!("token:{name}"),
            &format!(
                "role {}, id {id}{}",
                input.role,
                sites
                    .as_deref()
                    .map(|s| format!(", sites {s}"))
                    .unwrap_or_default()
            ),
        )
        .await?;
        store::commit(tx).await?;
        Ok(TokenCreated {
            token: TokenView {
                id,
                name: name.to_string(),
                prefix: token_prefix(&secret),
                role: input.role,
                created_by,
                created_at,
                last_used_at: None,
                revoked_at: None,
                sites,
            },
            secret,
        })
    }

    pub async fn tokens(&self) -> Result<Vec<TokenView>, ServiceError> {
        Ok(store_accounts::tokens(&self.db).await?)
    }

    /// Revokes a token at once (its next request gets 401).
    pub async fn revoke_token(&self, id: &str, actor: &str) -> Result<(), ServiceError> {
        let mut tx = store::begin(&self.db).await?;
        let Some(name) = store_accounts::active_token_name(&mut *tx, id).await? else {
            return Err(ServiceError::NotFound(format!(
                "no active token with id {id}"
            )));
        };
        store_accounts::revoke_token(&mut *tx, id, &clock::now()).await?;
        audit::record(
            &mut *tx,
            actor,
            "token.revoke",
            &format!("token:{name}"),
            id,
        )
        .await?;
        store::commit(tx).await?;
        Ok(())
    }

    /// The principal of an API token, or `None` when it is unknown or revoked.
    async fn token(&self, secret: &str) -> Result<Option<Principal>, ServiceError> {
        let hash = sha256_hex(secret);
        let Some((holder, last)) = store_accounts::token_by_hash(&self.db, &hash).await? else {
            return Ok(None);
        };
        // Last use, to the minute: enough to find unused tokens. Written only when it is
        // older than that, so most requests only read (a write would queue behind
        // SQLite's single writer). A failed write costs nothing but the figure.
        let now = chrono::Utc::now();
        let stale = clock::timestamp(now - chrono::Duration::minutes(1));
        if last.is_none_or(|l| l < stale) {
            let _ = store_accounts::touch_token(&self.db, &hash, &clock::timestamp(now)).await;
        }
        Ok(Some(self.principal(holder, Via::Token).await?))
    }

    /// Who is asking, from (in order) a bearer token, a trusted proxy's user header, the
    /// session cookie; `Ok(None)` when nobody is signed in (the anonymous role applies).
    /// A bad bearer token is an error rather than anonymous: a machine client should
    /// learn that its token stopped working.
    pub async fn authenticate(
        &self,
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
            return match self.token(secret).await? {
                Some(p) => Ok(Some(p)),
                None => Err(AuthError::BadToken.into()),
            };
        }
        if let Some(peer) = peer.filter(|p| self.settings.trusted_proxies.contains(p)) {
            if let Some(user) = headers.get(self.settings.proxy_user_header.as_str()) {
                let user = user
                    .to_str()
                    .map_err(|_| AuthError::Proxy("the proxy's user header is not text".into()))?;
                let found =
                    store_accounts::enabled_user(&self.db, &user.trim().to_lowercase()).await?;
                return match found {
                    Some(holder) => Ok(Some(self.principal(holder, Via::Proxy).await?)),
                    None => Err(AuthError::Proxy(format!(
                        "no active Opsight account for {:?}; ask an admin to add one (trusted proxy {peer})",
                        user.trim()
                    ))
                    .into()),
                };
            }
        }
        if let Some(cookie) = cookie(headers, SESSION_COOKIE) {
            return Ok(self.session(cookie).await?);
        }
        Ok(None)
    }

    /// The audit log, newest first, optionally for one action prefix.
    pub async fn audit(&self, q: AuditQuery) -> Result<Vec<AuditEntry>, ServiceError> {
        Ok(audit::list(&self.db, q.action.as_deref(), q.limit()).await?)
    }

    /// Records one audit entry on its own (changes that are not a database transaction,
    /// such as the agents read from the configuration at start-up).
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), ServiceError> {
        Ok(audit::record(&self.db, actor, action, target, detail).await?)
    }
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
        assert!(verify_password("correct horse".into(), Some(h.clone()))
            .await
            .unwrap());
        assert!(!verify_password("wrong horse".into(), Some(h))
            .await
            .unwrap());
        assert!(!verify_password("anything".into(), None).await.unwrap());
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
