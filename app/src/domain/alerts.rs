//! Alerts on trigger state, one per change of state and never one per refresh, with flap
//! suppression.
//!
//! Each card (site × KPI) has an [`AlertState`]. An *observation* is the card's trigger
//! state on new inputs (a new week, new data, new rules); re-reading unchanged inputs is
//! not an observation, so how often Opsight looks does not matter. A notice goes out when
//! the observed state differs from the last state people were told about: `Fired` when a
//! trigger starts firing, `Resolved` when it stops (only after a `Fired`).
//!
//! Flapping, as monitoring tools define it: when the last [`AlertPolicy::window`]
//! observations hold at least `flap_start` changes of state, one `Flapping` notice goes out
//! and the card stays quiet until the window holds at most `flap_stop` changes. Then, if
//! the state differs from the last one told, one notice brings people up to date.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AlertPolicy {
    /// Observations remembered, newest last (at most 32).
    pub window: usize,
    /// Changes of state within the window that start flap suppression.
    pub flap_start: usize,
    /// Changes of state within the window at or below which it ends.
    pub flap_stop: usize,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            window: 8,
            flap_start: 4,
            flap_stop: 1,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AlertState {
    /// The latest observation.
    pub firing: bool,
    /// The last observations, oldest first: `1` firing, `0` quiet.
    pub history: String,
    pub flapping: bool,
    /// The last state people were told about: `Some(true)` after `Fired`, `Some(false)`
    /// after `Resolved`, `None` before any notice.
    pub notified: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    Fired,
    Resolved,
    /// The trigger keeps changing state; notices pause until it settles.
    Flapping,
}

impl Notice {
    pub fn key(self) -> &'static str {
        match self {
            Notice::Fired => "fired",
            Notice::Resolved => "resolved",
            Notice::Flapping => "flapping",
        }
    }
}

/// Changes of state between consecutive observations in `history`.
pub fn changes(history: &str) -> usize {
    history
        .as_bytes()
        .windows(2)
        .filter(|w| w[0] != w[1])
        .count()
}

/// The state after observing `firing_now`, and the notice to send, if any.
pub fn observe(
    state: &AlertState,
    firing_now: bool,
    policy: AlertPolicy,
) -> (AlertState, Option<Notice>) {
    let window = policy.window.clamp(2, 32);
    let mut history: String = state
        .history
        .chars()
        .filter(|c| matches!(c, '0' | '1'))
        .collect();
    history.push(if firing_now { '1' } else { '0' });
    if history.len() > window {
        history.drain(..history.len() - window);
    }
    let n = changes(&history);
    let mut next = AlertState {
        firing: firing_now,
        history,
        flapping: state.flapping,
        notified: state.notified,
    };
    if !state.flapping && n >= policy.flap_start {
        next.flapping = true;
        return (next, Some(Notice::Flapping));
    }
    if state.flapping && n > policy.flap_stop {
        return (next, None);
    }
    next.flapping = false;
    let notice = match (firing_now, state.notified) {
        (true, Some(true)) | (false, None) | (false, Some(false)) => None,
        (true, _) => Some(Notice::Fired),
        (false, Some(true)) => Some(Notice::Resolved),
    };
    if notice.is_some() {
        next.notified = Some(firing_now);
    }
    (next, notice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seq: &[bool]) -> (AlertState, Vec<Option<Notice>>) {
        let mut s = AlertState::default();
        let mut out = Vec::new();
        for &f in seq {
            let (n, notice) = observe(&s, f, AlertPolicy::default());
            s = n;
            out.push(notice);
        }
        (s, out)
    }

    #[test]
    fn one_notice_per_change_of_state_not_per_observation() {
        let (_, notices) = run(&[false, false, true, true, true, false, false]);
        assert_eq!(
            notices,
            [
                None,
                None,
                Some(Notice::Fired),
                None,
                None,
                Some(Notice::Resolved),
                None
            ]
        );
    }

    #[test]
    fn an_oscillating_trigger_is_suppressed_after_one_flapping_notice() {
        let seq: Vec<bool> = (0..20).map(|i| i % 2 == 1).collect();
        let (state, notices) = run(&seq);
        let sent: Vec<Notice> = notices.iter().flatten().copied().collect();
        // Fired, resolved, fired; the fourth change is the flap; then silence.
        assert_eq!(
            sent,
            [
                Notice::Fired,
                Notice::Resolved,
                Notice::Fired,
                Notice::Flapping
            ]
        );
        assert!(state.flapping);
    }

    #[test]
    fn flapping_ends_when_it_settles_and_brings_people_up_to_date() {
        let mut seq: Vec<bool> = (0..10).map(|i| i % 2 == 1).collect();
        // Settles quiet: the last notice was "fired", so once calm one "resolved" goes out.
        seq.extend([false; 8]);
        let (state, notices) = run(&seq);
        let sent: Vec<Notice> = notices.iter().flatten().copied().collect();
        assert_eq!(sent.last(), Some(&Notice::Resolved), "{sent:?}");
        assert!(!state.flapping);
        assert_eq!(state.notified, Some(false));
        // Calm enough happens only when at most one change is left in the window.
        let settle_at = notices.iter().rposition(Option::is_some).unwrap();
        assert!(
            changes(
                &seq[settle_at + 1 - 8..=settle_at]
                    .iter()
                    .map(|f| if *f { '1' } else { '0' })
                    .collect::<String>()
            ) <= 1
        );
    }

    #[test]
    fn history_is_bounded_and_tolerates_garbage() {
        let s = AlertState {
            history: "x1y0".repeat(20),
            ..AlertState::default()
        };
        let (n, _) = observe(&s, true, AlertPolicy::default());
        assert_eq!(n.history.len(), 8);
        assert!(n.history.chars().all(|c| c == '0' || c == '1'));
    }
}
