//! Sites as people name them: each site's code (how lines name it), display name (any
//! Unicode text) and region (a group), renamed and grouped through a sites CSV
//! (`code,name,region`) or the API, all or nothing.

use crate::dto::SiteInfo;
use crate::ssr::error::ServiceError;
use crate::ssr::store::facts;
use crate::ssr::store::{self, Db};

/// Longest name and region, in characters.
const MAX_NAME: usize = 100;

fn check(s: &SiteInfo, known: &[String]) -> Result<facts::Site, String> {
    let code = s.code.trim().to_uppercase();
    if !known.contains(&code) {
        return Err(format!("no site has the code '{}'", s.code.trim()));
    }
    let name = s.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(format!("name must be 1 to {MAX_NAME} characters"));
    }
    let region = s.region.trim();
    if region.chars().count() > MAX_NAME || region.chars().any(char::is_control) {
        return Err(format!("region must be at most {MAX_NAME} characters"));
    }
    Ok(facts::Site {
        code,
        name: name.to_string(),
        region: region.to_string(),
    })
}

/// Renames and groups sites, in one transaction: a bad entry changes nothing. `label(i)`
/// names entry `i` in errors (a CSV line, or an array index).
pub async fn save(
    db: &Db,
    sites: &[SiteInfo],
    label: impl Fn(usize) -> String,
) -> Result<Vec<SiteInfo>, ServiceError> {
    let known: Vec<String> = facts::sites(db)
        .await?
        .into_iter()
        .map(|s| s.code)
        .collect();
    let mut checked = Vec::with_capacity(sites.len());
    let mut errors = Vec::new();
    for (i, s) in sites.iter().enumerate() {
        match check(s, &known) {
            Ok(site) => checked.push(site),
            Err(e) => errors.push(format!("{}: {e}", label(i))),
        }
    }
    if !errors.is_empty() {
        errors.truncate(20);
        return Err(ServiceError::BadRequest(format!(
            "nothing was saved: {}",
            errors.join("; ")
        )));
    }
    let mut tx = store::begin(db).await?;
    facts::upsert_sites(&mut tx, &checked).await?;
    store::commit(tx).await?;
    list(db, &crate::domain::access::Reach::All).await
}

/// Every site with its name and region.
/// The sites within `reach`.
pub async fn list(
    db: &Db,
    reach: &crate::domain::access::Reach,
) -> Result<Vec<SiteInfo>, ServiceError> {
    Ok(facts::sites(db)
        .await?
        .into_iter()
        .filter(|s| reach.sees(&s.code))
        .map(|s| SiteInfo {
            code: s.code,
            name: s.name,
            region: s.region,
        })
        .collect())
}

/// Renames sites given through the API (entries named by their index in errors).
pub async fn put(db: &Db, sites: Vec<SiteInfo>) -> Result<Vec<SiteInfo>, ServiceError> {
    save(db, &sites, |i| format!("entry {i}")).await
}

/// Imports a CSV with a header naming `code`, `name` and optionally `region`.
pub async fn import_csv(db: &Db, reader: impl std::io::Read) -> Result<usize, ServiceError> {
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| ServiceError::BadRequest(format!("line 1: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(code), Some(name), region) = (col("code"), col("name"), col("region")) else {
        return Err(ServiceError::BadRequest(
            "line 1: the header needs code and name (and may have region)".into(),
        ));
    };
    let mut sites = Vec::new();
    for (i, record) in csv.records().enumerate() {
        let record =
            record.map_err(|e| ServiceError::BadRequest(format!("line {}: {e}", i + 2)))?;
        let get = |at: Option<usize>| at.and_then(|a| record.get(a)).unwrap_or("").to_string();
        sites.push(SiteInfo {
            code: get(Some(code)),
            name: get(Some(name)),
            region: get(region),
        });
    }
    let n = sites.len();
    save(db, &sites, |i| format!("line {}", i + 2)).await?;
    Ok(n)
}
