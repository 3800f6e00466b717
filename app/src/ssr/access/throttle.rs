//! Sign-in throttling and the cap on password hashing.
//!
//! Every sign-in attempt costs an Argon2id verification (19 MiB, tens of milliseconds of
//! a core). So:
//! - attempts are counted, each in a token bucket refilling over [`SignInLimits::window`]:
//!   per account and client address (`per_account`: one address guessing one account),
//!   per account from anywhere ([`ACCOUNT_SPREAD`] × `per_account`: a guess spread over
//!   many addresses), and per address (`per_address`: one address guessing many
//!   accounts). The account is the lower-cased name, known or not; the address the peer,
//!   or the one a trusted proxy forwarded. An attempt over any gets 429 with
//!   `Retry-After` before any hashing. Someone guessing from elsewhere does not lock the
//!   user out at their own desk. A successful sign-in gives the account its allowances
//!   back (a user who mistyped twice is not slowed down later) and the address its attempt
//!   (a hundred colleagues behind one office address sign in every morning).
//! - at most [`hashing_permits`] hashes run at once in the process (sign-ins, new users,
//!   password changes); a hash waits at most [`HASH_WAIT`] for its turn, then gets 429
//!   too. So a burst costs at most `permits × 19 MiB` of memory and `permits` cores,
//!   whatever its size.
//!
//! Limits are per replica (in memory), like the agent-call limits.

use super::limits::Bucket;
use crate::ssr::error::ServiceError;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Sign-in attempts allowed per account and per client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignInLimits {
    /// Attempts per window for one account (`OPSIGHT_SIGNIN_PER_ACCOUNT`).
    pub per_account: u32,
    /// Attempts per window from one client address (`OPSIGHT_SIGNIN_PER_ADDRESS`).
    pub per_address: u32,
    /// The window both refill over.
    pub window: Duration,
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits {
            per_account: 10,
            per_address: 30,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Why a sign-in was refused before its password was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInRefused {
    Account { retry_after: Duration },
    Address { retry_after: Duration },
}

impl SignInRefused {
    pub fn retry_after(&self) -> Duration {
        match *self {
            SignInRefused::Account { retry_after } | SignInRefused::Address { retry_after } => {
                retry_after
            }
        }
    }

    /// The metric label.
    pub fn limit(&self) -> &'static str {
        match self {
            SignInRefused::Account { .. } => "account",
            SignInRefused::Address { .. } => "address",
        }
    }

    /// What the user reads with the 429 (which account or address is not said twice:
    /// the form already shows the name).
    pub fn message(&self) -> String {
        let secs = self.retry_after().as_secs_f64().ceil().max(1.0) as u64;
        let wait = if secs >= 120 {
            format!("{} minutes", secs.div_ceil(60))
        } else {
            format!("{secs} s")
        };
        match self {
            SignInRefused::Account { .. } => {
                format!("Too many sign-in attempts for this account; try again in {wait}.")
            }
            SignInRefused::Address { .. } => {
                format!("Too many sign-in attempts from your address; try again in {wait}.")
            }
        }
    }
}

/// Buckets kept before full (idle) ones are dropped.
const MAX_TRACKED: usize = 10_000;

/// An account's attempts from everywhere together, in multiples of `per_account`: what
/// bounds a guess spread over many addresses without letting one address lock a user out.
pub const ACCOUNT_SPREAD: u32 = 10;

/// Sign-in buckets: per (account, address), per account from anywhere, per address, and
/// the attempts successes give back to an address.
#[derive(Debug)]
pub struct SignInThrottle {
    pub limits: SignInLimits,
    pairs: Mutex<HashMap<(String, Option<IpAddr>), Bucket>>,
    accounts: Mutex<HashMap<String, Bucket>>,
    addresses: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        SignInThrottle::new(SignInLimits::default())
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SignInThrottle {
    pub fn new(limits: SignInLimits) -> Self {
        SignInThrottle {
            limits,
            pairs: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// Charges one attempt to `account` from `address` (its pair, the account and the
    /// address), or says which refuses it (a refused attempt charges nothing).
    pub fn admit(
        &self,
        account: &str,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), SignInRefused> {
        let l = self.limits;
        let account = account.trim().to_lowercase();
        let spread = l.per_account.saturating_mul(ACCOUNT_SPREAD);
        let mut pairs = locked(&self.pairs);
        let mut accounts = locked(&self.accounts);
        let mut addresses = locked(&self.addresses);
        let account_wait = |retry_after| SignInRefused::Account { retry_after };
        let pair = room(
            &mut pairs,
            (account.clone(), address),
            l.per_account,
            l.window,
            now,
        )
        .map_err(account_wait)?;
        let total = room(&mut accounts, account, spread, l.window, now).map_err(account_wait)?;
        let from = match address {
            Some(ip) => Some(
                room(&mut addresses, ip, l.per_address, l.window, now)
                    .map_err(|retry_after| SignInRefused::Address { retry_after })?,
            ),
            None => None,
        };
        // Charged only once every bucket has room.
        pair.tokens -= 1.0;
        total.tokens -= 1.0;
        if let Some(b) = from {
            b.tokens -= 1.0;
        }
        Ok(())
    }

    /// A successful sign-in: the account's allowances are whole again, and the address
    /// gets back the attempt it was charged, so only failures use an address's allowance
    /// up. (No more than that: an address that has used up its allowance is refused
    /// before any success, so successes between guesses buy no guesses.)
    pub fn succeeded(&self, account: &str, address: Option<IpAddr>) {
        let l = self.limits;
        let account = account.trim().to_lowercase();
        locked(&self.pairs).remove(&(account.clone(), address));
        locked(&self.accounts).remove(&account);
        if let Some(ip) = address {
            if let Some(b) = locked(&self.addresses).get_mut(&ip) {
                b.tokens = (b.tokens + 1.0).min(l.per_address as f64);
            }
        }
    }
}

/// `key`'s bucket refilled to `now`, when it has an attempt to give; else how long until
/// it has one. Nothing is charged.
fn room<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Bucket>,
    key: K,
    capacity: u32,
    window: Duration,
    now: Instant,
) -> Result<&mut Bucket, Duration> {
    prune(map, &key, capacity, window, now);
    let bucket = map
        .entry(key)
        .or_insert_with(|| Bucket::full(capacity, now));
    let wait = bucket.refill_over(capacity, window, now);
    if wait.is_zero() {
        Ok(bucket)
    } else {
        Err(wait)
    }
}

/// Keeps a map bounded: at its limit, buckets that have refilled (idle) are dropped; if
/// all are in use (a flood of names), the fullest half goes and the most limited stay,
/// the older first among equals, so a flood cannot reset a throttled account.
fn prune<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Bucket>,
    key: &K,
    capacity: u32,
    window: Duration,
    now: Instant,
) {
    if map.len() < MAX_TRACKED || map.contains_key(key) {
        return;
    }
    map.retain(|_, b| {
        let mut b = *b;
        b.refill_over(capacity, window, now);
        b.tokens < capacity as f64
    });
    if map.len() >= MAX_TRACKED {
        let mut by_tokens: Vec<(K, f64, Instant)> = map
            .iter()
            .map(|(k, b)| (k.clone(), b.tokens, b.at))
            .collect();
        by_tokens.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)));
        for (k, _, _) in by_tokens.into_iter().skip(MAX_TRACKED / 2) {
            map.remove(&k);
        }
    }
}

/// How long a password hash waits for a free slot before the request gets 429.
pub const HASH_WAIT: Duration = Duration::from_secs(5);

/// Password hashes that may run at once in this process: the cores, at least two.
pub fn hashing_permits() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

fn hashing() -> &'static Semaphore {
    static S: OnceLock<Semaphore> = OnceLock::new();
    S.get_or_init(|| Semaphore::new(hashing_permits()))
}

/// A slot to hash a password in, waiting at most [`HASH_WAIT`]; `Busy` (429) when the
/// slots stay taken.
pub async fn hashing_slot() -> Result<SemaphorePermit<'static>, ServiceError> {
    let busy = || {
        crate::ssr::metrics::count_sign_in_refused("busy");
        ServiceError::Busy(
            "Too many sign-ins are being checked at once; try again in a few seconds.".into(),
        )
    };
    match tokio::time::timeout(HASH_WAIT, hashing().acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(busy()),
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the rightmost
/// address of `X-Forwarded-For` that is not itself a trusted proxy (the left part of
/// that header is whatever the client wrote, so it is not believed).
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    // IPv4 peers of a dual-stack listener arrive as `::ffff:a.b.c.d`.
    let peer = peer?.to_canonical();
    let trusted = |ip: &IpAddr| trusted.iter().any(|t| t.to_canonical() == *ip);
    if !trusted(&peer) {
        return Some(peer);
    }
    let Some(chain) = forwarded_for else {
        return Some(peer);
    };
    let mut last = peer;
    for hop in chain.rsplit(',') {
        match hop_address(hop) {
            Some(ip) if trusted(&ip) => last = ip,
            Some(ip) => return Some(ip),
            // A malformed hop: the proxies' chain ends here; the last good hop is it.
            None => return Some(last),
        }
    }
    Some(last)
}

/// One `X-Forwarded-For` hop: an address, with or without a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`, as some load balancers write them).
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest
            .split_once(']')?
            .0
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical());
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_account_gets_its_allowance_then_waits_and_success_restores_it() {
        let t = SignInThrottle::new(SignInLimits {
            per_account: 3,
            per_address: 100,
            window: Duration::from_secs(300),
        });
        let t0 = Instant::now();
        let (one, two) = (Some(ip("10.0.0.1")), Some(ip("10.0.0.2")));
        for _ in 0..3 {
            assert!(t.admit("Alice", one, t0).is_ok());
        }
        let refused = t.admit("alice ", one, t0).unwrap_err();
        assert_eq!(refused.limit(), "account");
        assert_eq!(refused.retry_after(), Duration::from_secs(100));
        assert!(refused.message().contains("100 s"), "{}", refused.message());
        // Alice at her own desk is not locked out by guesses from elsewhere.
        assert!(t.admit("alice", two, t0).is_ok());
        // Another account is not affected.
        assert!(t.admit("bob", one, t0).is_ok());
        // 100 s later one more attempt.
        let t1 = t0 + Duration::from_secs(100);
        assert!(t.admit("alice", one, t1).is_ok());
        assert!(t.admit("alice", one, t1).is_err());
        t.succeeded("ALICE", one);
        for _ in 0..3 {
            assert!(t.admit("alice", one, t1).is_ok());
        }
    }

    #[test]
    fn a_guess_spread_over_many_addresses_meets_the_accounts_own_limit() {
        let t = SignInThrottle::new(SignInLimits {
            per_account: 2,
            per_address: 100,
            window: Duration::from_secs(600),
        });
        let t0 = Instant::now();
        let mut allowed = 0;
        for i in 0..100u8 {
            if t.admit("carol", Some(ip(&format!("192.0.2.{i}"))), t0)
                .is_ok()
            {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 2 * ACCOUNT_SPREAD);
    }

    #[test]
    fn a_flood_of_names_cannot_reset_a_throttled_account() {
        let t = SignInThrottle::new(SignInLimits {
            per_account: 1,
            per_address: 1_000_000,
            window: Duration::from_secs(3600),
        });
        let t0 = Instant::now();
        let here = Some(ip("10.1.1.1"));
        assert!(t.admit("dave", here, t0).is_ok());
        assert!(t.admit("dave", here, t0).is_err());
        for i in 0..(MAX_TRACKED + 10) {
            let _ = t.admit(
                &format!("n{i}"),
                here,
                t0 + Duration::from_micros(i as u64 + 1),
            );
        }
        let later = t0 + Duration::from_millis(20);
        assert!(t.admit("dave", here, later).is_err(), "still throttled");
    }

    #[test]
    fn an_address_is_limited_across_accounts_and_refusals_cost_nothing() {
        let t = SignInThrottle::new(SignInLimits {
            per_account: 1,
            per_address: 4,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        for name in ["a", "b", "c", "d"] {
            assert!(t.admit(name, Some(ip("192.0.2.7")), t0).is_ok());
        }
        let refused = t.admit("e", Some(ip("192.0.2.7")), t0).unwrap_err();
        assert_eq!(refused.limit(), "address");
        assert!(refused.message().contains("your address"));
        // "e" was not charged by the refusal: from elsewhere it has its one attempt.
        assert!(t.admit("e", Some(ip("192.0.2.8")), t0).is_ok());
        assert_eq!(
            t.admit("e", Some(ip("192.0.2.8")), t0).unwrap_err().limit(),
            "account"
        );
        // Successes give the address its attempts back: an office signing in all day.
        let office = Some(ip("198.51.100.20"));
        for i in 0..100 {
            let name = format!("user{i}");
            assert!(t.admit(&name, office, t0).is_ok(), "sign-in {i}");
            t.succeeded(&name, office);
        }
        // Failures in between still use it up, and then no success can refund it.
        for i in 0..4 {
            assert!(t.admit(&format!("guess{i}"), office, t0).is_ok());
        }
        assert_eq!(t.admit("user1", office, t0).unwrap_err().limit(), "address");
    }

    #[test]
    fn the_client_address_believes_only_trusted_proxies() {
        let proxy = ip("10.0.0.9");
        let trusted = [proxy];
        // Direct: the peer, whatever the header says.
        assert_eq!(
            client_address(Some(ip("203.0.113.5")), Some("1.2.3.4"), &trusted),
            Some(ip("203.0.113.5"))
        );
        // Through the proxy: the hop it saw, not what the client wrote to the left.
        assert_eq!(
            client_address(Some(proxy), Some("1.2.3.4, 203.0.113.5"), &trusted),
            Some(ip("203.0.113.5"))
        );
        // Two trusted hops.
        assert_eq!(
            client_address(
                Some(proxy),
                Some("203.0.113.5, 10.0.0.9"),
                &[proxy, ip("10.0.0.9")]
            ),
            Some(ip("203.0.113.5"))
        );
        // A proxy that sent no header: the proxy itself.
        assert_eq!(client_address(Some(proxy), None, &trusted), Some(proxy));
        assert_eq!(
            client_address(Some(proxy), Some("garbage"), &trusted),
            Some(proxy)
        );
        // Ports, brackets and IPv4-mapped addresses.
        assert_eq!(
            client_address(Some(proxy), Some("203.0.113.5:51234"), &trusted),
            Some(ip("203.0.113.5"))
        );
        assert_eq!(
            client_address(Some(proxy), Some("[2001:db8::7]:443"), &trusted),
            Some(ip("2001:db8::7"))
        );
        assert_eq!(
            client_address(Some(ip("::ffff:10.0.0.9")), Some("203.0.113.6"), &trusted),
            Some(ip("203.0.113.6"))
        );
    }

    #[test]
    fn refusals_name_minutes_for_long_waits() {
        let r = SignInRefused::Account {
            retry_after: Duration::from_secs(601),
        };
        assert!(r.message().contains("11 minutes"), "{}", r.message());
    }
}
