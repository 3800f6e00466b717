//! Who may do what: roles, and the shape of an access policy.
//!
//! The policy of every operation is declared once, in the server's operation table
//! (`server/src/routes/operations.rs`), next to its JSON API route and its server
//! function, and applied by the server's guard before any handler runs. The browser uses
//! [`Role::can`] only to hide what a role cannot do; hiding is never the check.

use serde::{Deserialize, Serialize};

/// Roles, each including the one before.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything; asks questions (rate-limited) and gives feedback.
    Viewer,
    /// + refreshes insights, starts runs, edits rules, schedules, actions and unit costs,
    ///   sends digests.
    Editor,
    /// + users, API tokens, the audit log and agent settings.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Editor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected viewer, editor or admin"
            )),
        }
    }

    /// Whether this role includes `needed`.
    pub fn can(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signed-in user (or API token) as the browser sees it: a name and a role, nothing
/// secret, and the sites it is limited to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Me {
    pub name: String,
    pub role: Role,
    /// The site codes it may see, when limited (`None`: every site and the network).
    #[serde(default)]
    pub sites: Option<Vec<String>>,
}

/// Which sites a principal may see: all (and the network), or only some. A user or API
/// token is limited by a grant of site codes and regions (`DAL,ATL,region:South`), which
/// [`Reach::resolve`] turns into codes against the sites as they are now.
///
/// A limited principal sees those sites' tiles, cards, insights, conversations, runs and
/// digests, and the network row as the sum of its sites; never a whole-network pack or
/// insight (those are about every site).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Reach {
    #[default]
    All,
    Sites(std::collections::BTreeSet<String>),
}

/// One entry of a grant: a site code, or every site of a region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    Site(String),
    Region(String),
}

/// Parses a grant (`DAL, ATL, region:South`): entries separated by commas, empty ones
/// ignored; `None` when there is none (no limit).
pub fn parse_grant(text: &str) -> Result<Option<Vec<Grant>>, String> {
    let mut out = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.split_once(':') {
            Some((kind, region)) if kind.trim().eq_ignore_ascii_case("region") => {
                let region = region.trim();
                if region.is_empty() {
                    return Err(format!("'{entry}' names no region"));
                }
                out.push(Grant::Region(region.to_string()));
            }
            Some(_) => return Err(format!("'{entry}' is neither a site code nor region:NAME")),
            None => out.push(Grant::Site(entry.to_string())),
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// A grant as stored and shown (`DAL,ATL,region:South`).
pub fn grant_text(grant: &[Grant]) -> String {
    grant
        .iter()
        .map(|g| match g {
            Grant::Site(s) => s.clone(),
            Grant::Region(r) => format!("region:{r}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Reach {
    /// The sites a grant covers, given every site as (code, region). Unknown codes and
    /// regions are errors (a typo would otherwise grant nothing, silently); see
    /// [`Reach::resolve_existing`] for a grant checked earlier.
    pub fn resolve(grant: &[Grant], sites: &[(String, String)]) -> Result<Reach, String> {
        let mut codes = std::collections::BTreeSet::new();
        for g in grant {
            match g {
                Grant::Site(code) => {
                    let known = sites.iter().find(|(c, _)| c.eq_ignore_ascii_case(code));
                    let (c, _) = known.ok_or_else(|| format!("there is no site '{code}'"))?;
                    codes.insert(c.clone());
                }
                Grant::Region(region) => {
                    let before = codes.len();
                    codes.extend(
                        sites
                            .iter()
                            .filter(|(_, r)| r.eq_ignore_ascii_case(region))
                            .map(|(c, _)| c.clone()),
                    );
                    if codes.len() == before
                        && !sites.iter().any(|(_, r)| r.eq_ignore_ascii_case(region))
                    {
                        return Err(format!("there is no region '{region}'"));
                    }
                }
            }
        }
        Ok(Reach::Sites(codes))
    }

    /// The sites of a grant that still exist (a site removed since the grant was made
    /// just drops out; the principal never widens to every site).
    pub fn resolve_existing(grant: &[Grant], sites: &[(String, String)]) -> Reach {
        let mut codes = std::collections::BTreeSet::new();
        for g in grant {
            for (code, region) in sites {
                let hit = match g {
                    Grant::Site(s) => code.eq_ignore_ascii_case(s),
                    Grant::Region(r) => region.eq_ignore_ascii_case(r),
                };
                if hit {
                    codes.insert(code.clone());
                }
            }
        }
        Reach::Sites(codes)
    }

    /// Whether it may see `site` (the network only when unlimited).
    pub fn sees(&self, site: &str) -> bool {
        match self {
            Reach::All => true,
            Reach::Sites(s) => s.contains(site),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Reach::All)
    }

    /// The codes, when limited.
    pub fn sites(&self) -> Option<Vec<String>> {
        match self {
            Reach::All => None,
            Reach::Sites(s) => Some(s.iter().cloned().collect()),
        }
    }

    /// Why `site` is out of reach (for a 403).
    pub fn refusal(&self, site: &str) -> String {
        let list = self.sites().unwrap_or_default().join(", ");
        if site == crate::domain::evidence::NETWORK {
            format!("your access covers {list}, not the whole network")
        } else {
            format!("your access covers {list}, not {site}")
        }
    }

    /// Why something of another site (found by its id) is out of reach; the site is not
    /// named (the id may be all the asker knows).
    pub fn refusal_of_other(&self) -> String {
        let list = self.sites().unwrap_or_default().join(", ");
        format!("your access covers {list}; this is about another site")
    }

    /// The narrower of two reaches (a token made by a limited user is at most as wide).
    pub fn within(&self, outer: &Reach) -> Reach {
        match (self, outer) {
            (r, Reach::All) => r.clone(),
            (Reach::All, o) => o.clone(),
            (Reach::Sites(a), Reach::Sites(b)) => {
                Reach::Sites(a.intersection(b).cloned().collect())
            }
        }
    }
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone: health, metrics, sign-in, static files, the built-in analyst.
    Public,
    /// A signed-in user or token with at least this role.
    Role(Role),
}

/// The policy of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub need: Need,
    /// It makes an agent call (money, capacity): counted by the rate limits.
    pub calls_agent: bool,
    /// It shows or changes what covers every site (rules, schedules, digests, sources):
    /// refused to a principal limited to some sites.
    pub every_site: bool,
}

impl Policy {
    /// The same, and only for principals that reach every site.
    pub const fn every_site(self) -> Policy {
        Policy {
            every_site: true,
            ..self
        }
    }
}

/// Anyone may.
pub const fn open() -> Policy {
    Policy {
        need: Need::Public,
        calls_agent: false,
        every_site: false,
    }
}

/// At least this role.
pub const fn role(r: Role) -> Policy {
    Policy {
        need: Need::Role(r),
        calls_agent: false,
        every_site: false,
    }
}

/// At least this role, and it calls an agent (rate-limited).
pub const fn agent(r: Role) -> Policy {
    Policy {
        need: Need::Role(r),
        calls_agent: true,
        every_site: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites() -> Vec<(String, String)> {
        [("DAL", "South"), ("ATL", "South"), ("CHI", "North")]
            .iter()
            .map(|(c, r)| (c.to_string(), r.to_string()))
            .collect()
    }

    #[test]
    fn grants_resolve_to_site_codes() {
        let g = parse_grant(" dal, region:North ,").unwrap().unwrap();
        assert_eq!(
            g,
            vec![Grant::Site("dal".into()), Grant::Region("North".into())]
        );
        assert_eq!(grant_text(&g), "dal,region:North");
        let reach = Reach::resolve(&g, &sites()).unwrap();
        assert_eq!(
            reach.sites(),
            Some(vec!["CHI".to_string(), "DAL".to_string()])
        );
        assert!(reach.sees("DAL") && reach.sees("CHI"));
        assert!(!reach.sees("ATL") && !reach.sees("network"));
        assert!(reach.refusal("network").contains("not the whole network"));
        assert!(Reach::All.sees("network"));
        assert_eq!(parse_grant(" , ").unwrap(), None);
        assert!(parse_grant("zone:x").unwrap_err().contains("region:NAME"));
        assert!(parse_grant("region:").is_err());
        let e = Reach::resolve(&[Grant::Site("HOU".into())], &sites()).unwrap_err();
        assert!(e.contains("no site 'HOU'"), "{e}");
        let e = Reach::resolve(&[Grant::Region("West".into())], &sites()).unwrap_err();
        assert!(e.contains("no region 'West'"), "{e}");
        // A site gone since the grant: it drops out, nothing widens.
        let gone = [Grant::Site("HOU".into()), Grant::Site("ATL".into())];
        assert_eq!(
            Reach::resolve_existing(&gone, &sites()).sites(),
            Some(vec!["ATL".to_string()])
        );
        assert_eq!(
            Reach::resolve_existing(&[Grant::Site("HOU".into())], &sites()).sites(),
            Some(vec![])
        );
    }

    #[test]
    fn a_narrower_reach_wins() {
        let south = Reach::resolve(&[Grant::Region("south".into())], &sites()).unwrap();
        let dal = Reach::resolve(&[Grant::Site("DAL".into())], &sites()).unwrap();
        assert_eq!(Reach::All.within(&south), south);
        assert_eq!(south.within(&Reach::All), south);
        assert_eq!(south.within(&dal), dal);
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.can(Role::Editor) && Role::Admin.can(Role::Viewer));
        assert!(Role::Editor.can(Role::Viewer) && !Role::Editor.can(Role::Admin));
        assert!(!Role::Viewer.can(Role::Editor));
        assert_eq!(Role::parse(" Editor "), Ok(Role::Editor));
        assert!(Role::parse("root")
            .unwrap_err()
            .contains("viewer, editor or admin"));
        assert!(agent(Role::Viewer).calls_agent && !role(Role::Viewer).calls_agent);
        assert_eq!(open().need, Need::Public);
    }
}
