//! Alert evaluation: each card's trigger state is observed when its inputs change (week,
//! value, rules version), the pure state machine in [`crate::domain::alerts`] decides
//! whether people hear about it, and the new state and its notification commit together.
//! State rows are updated by compare-and-set on a revision, so replicas evaluating at
//! the same moment send one notice, not two.

use super::Notify;
use crate::domain::alerts::{observe, Notice};
use crate::domain::digest::Digest;
use crate::domain::status::NotificationKind;
use crate::dto::{AlertsChecked, SiteRow, Tile};
use crate::ssr::clock;
use crate::ssr::error::ServiceError;
use crate::ssr::store::{self, notifications};

/// What the observation depends on: a re-read of unchanged inputs is not an observation.
fn fingerprint(week: &str, tile: &Tile, rules_version: i64) -> String {
    format!(
        "{week}|{:?}|{rules_version}|{}",
        tile.value.map(|v| (v * 1e6).round() as i64),
        tile.trigger.as_deref().unwrap_or("-")
    )
}

fn title(row: &SiteRow, tile: &Tile, notice: Notice) -> String {
    let what = match notice {
        Notice::Fired => format!("trigger {} fired", tile.trigger.as_deref().unwrap_or("?")),
        Notice::Resolved => "back to normal: no trigger fires".to_string(),
        Notice::Flapping => {
            "keeps flipping between firing and normal; alerts paused until it settles".to_string()
        }
    };
    format!("Opsight alert: {} {} {what}", row.name, tile.name)
}

impl Notify {
    /// Observes every card once; returns the alert notifications queued.
    #[tracing::instrument(skip_all)]
    pub async fn check_alerts(&self) -> Result<AlertsChecked, ServiceError> {
        let dashboard = self
            .cards
            .dashboard(Default::default(), &crate::domain::access::Reach::All)
            .await?;
        let mut known = notifications::alert_states(&self.db).await?;
        let policy = self.notifier.alert_policy;
        let now = clock::now();
        let mut queued = Vec::new();
        for row in std::iter::once(&dashboard.network).chain(&dashboard.sites) {
            for tile in &row.tiles {
                // A week without data says nothing about the trigger (a stopped feed is
                // not "back to normal"): no observation.
                if tile.value.is_none() {
                    continue;
                }
                let key = (row.site.clone(), tile.metric.key().to_string());
                let fp = fingerprint(&dashboard.period.label, tile, dashboard.rules_version);
                let before = known.remove(&key);
                if before.as_ref().is_some_and(|b| b.fingerprint == fp) {
                    continue;
                }
                let old = before.as_ref().map(|b| b.state.clone()).unwrap_or_default();
                let (next, notice) = observe(&old, tile.trigger.is_some(), policy);
                let mut tx = store::begin(&self.db).await?;
                let won = notifications::set_alert_state(
                    &mut *tx,
                    &key.0,
                    &key.1,
                    &next,
                    tile.trigger.as_deref(),
                    &fp,
                    before.as_ref().map_or(0, |b| b.revision),
                    &now,
                )
                .await?;
                if !won {
                    // Another replica observed the same change first (dropping the
                    // transaction rolls it back).
                    continue;
                }
                if let Some(notice) = notice {
                    let mut item =
                        self.item(row, tile, row.card(tile.metric), "", dashboard.compare);
                    if notice == Notice::Resolved {
                        item.trigger = None;
                    }
                    let d = Digest {
                        id: None,
                        title: title(row, tile, notice),
                        generated_at: now.clone(),
                        as_of: dashboard.as_of.clone(),
                        period: dashboard.period.label.clone(),
                        items: vec![item],
                        more: 0,
                        fine: 0,
                        link: self.notifier.link("/"),
                    };
                    let id = self
                        .enqueue(
                            &mut tx,
                            NotificationKind::Alert,
                            &d,
                            None,
                            None,
                            Some((&key.0, &key.1, notice.key())),
                        )
                        .await?;
                    tracing::info!(site = %key.0, metric = %key.1, notice = notice.key(), notification = %id, "alert");
                    queued.push(id);
                }
                store::commit(tx).await?;
            }
        }
        if !queued.is_empty() {
            self.wake();
        }
        Ok(AlertsChecked { queued })
    }
}
