//! The status vocabularies: one enum each, shared by the database (stored as the same
//! lower-case text), the JSON API (its schema lists the values) and the browser.
//!
//! Each enum has `as_str` (what is stored and sent), `parse` (what is read back; an
//! unknown value is an error, never a silent default) and `Display`.

/// Declares a vocabulary enum: serde, JSON schema, `as_str`, `parse`, `Display`, and
/// `TryFrom<String>` (so a row struct can read it straight from a text column).
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Result<$name, String> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", stringify!($name), " {:?}; expected one of {}"),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Compares with the stored text (`status == "ok"`), for tests and logs.
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(text: String) -> Result<$name, String> {
                $name::parse(&text)
            }
        }
    };
}

pub(crate) use vocabulary;

vocabulary! {
    /// How an agent call ended: an answer usable on a card (`ok`) or a failed attempt
    /// (`error`, with a safe message). Insights and their lineage share it.
    AnswerStatus {
        Ok = "ok",
        Error = "error",
    }
}

vocabulary! {
    /// A conversation turn: being answered, answered, or failed.
    TurnStatus {
        Running = "running",
        Ok = "ok",
        Error = "error",
    }
}

vocabulary! {
    /// A refresh run: jobs still open, all jobs ended, or a missed tick recorded as skipped.
    RunStatus {
        Running = "running",
        Finished = "finished",
        Skipped = "skipped",
    }
}

vocabulary! {
    /// One card of a run.
    JobStatus {
        /// Waiting for a replica to claim it.
        Queued = "queued",
        /// Claimed under a lease.
        Running = "running",
        /// A new insight was stored.
        Done = "done",
        /// Evidence, rules and agent were as for the last insight: no agent call.
        Unchanged = "unchanged",
        Failed = "failed",
    }
}

impl JobStatus {
    /// The job has ended (it will not be claimed again).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Unchanged | JobStatus::Failed
        )
    }
}

vocabulary! {
    /// Where a run came from.
    RunOrigin {
        Schedule = "schedule",
        /// The dashboard, the API or a schedule's "run now".
        Manual = "manual",
        Cli = "cli",
    }
}

vocabulary! {
    /// One notification's delivery to one channel.
    DeliveryStatus {
        /// Waiting for its next attempt.
        Pending = "pending",
        /// Claimed by a replica, being sent.
        Sending = "sending",
        Sent = "sent",
        /// Out of attempts, or the channel is gone.
        Failed = "failed",
    }
}

vocabulary! {
    NotificationKind {
        Digest = "digest",
        Alert = "alert",
    }
}

vocabulary! {
    /// Whether a thumbs up/down reached MLflow as an assessment.
    FeedbackSync {
        /// No trace id, or the agent has no tracking server.
        NotApplicable = "not_applicable",
        Pending = "pending",
        Sent = "sent",
        Failed = "failed",
    }
}

vocabulary! {
    /// An agent's circuit breaker.
    BreakerState {
        /// Calls go through.
        Closed = "closed",
        /// One trial call decides whether it closes again.
        HalfOpen = "half-open",
        /// Calls are refused until the cool-down ends.
        Open = "open",
    }
}

vocabulary! {
    /// A digest or alert channel's format.
    ChannelKind {
        /// An incoming webhook taking Slack's `{text, blocks}` (Slack, Mattermost, many bots).
        Slack = "slack",
        /// A webhook taking the generic JSON document.
        Json = "json",
        /// An HTML e-mail through the configured SMTP server.
        Email = "email",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_and_unknown_ones_are_refused() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Ok(*s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(
            serde_json::to_value(BreakerState::HalfOpen).unwrap(),
            "half-open"
        );
        let e = RunStatus::parse("done").unwrap_err();
        assert!(e.contains("running, finished, skipped"), "{e}");
        assert!(JobStatus::Unchanged.is_final() && !JobStatus::Running.is_final());
    }
}

vocabulary! {
    /// A data source's sync: reading, done, failed (nothing written), or abandoned (the
    /// replica running it died; its transaction never committed, so nothing was written).
    SyncStatus {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Abandoned = "abandoned",
    }
}

vocabulary! {
    /// What started a sync: someone on the dashboard or the API, its schedule, or
    /// `opsight sources sync`.
    SyncTrigger {
        Manual = "manual",
        Schedule = "schedule",
        Command = "command",
    }
}
