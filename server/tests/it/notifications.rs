//! Digests and alerts delivered to real local receivers: a webhook server (Slack-compatible
//! and generic JSON, one that fails before it succeeds, one that always fails) and an SMTP
//! sink. Deliveries are recorded with status and attempts and retried with backoff; alerts
//! go out on state change only, with flap suppression on an oscillating trigger.

use crate::common::{spawn_app_notifying, TestApp};
use app::domain::status::ChannelKind;
use app::dto::{Dashboard, NotificationView};
use app::ssr::agent::Secret;
use app::ssr::notify::{Channel, Notifier, RetryPolicy, Smtp};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A webhook receiver: `/{name}` records each body; `fail` says how many requests to a
/// name get HTTP 500 first (`usize::MAX`: always).
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<HashMap<String, Vec<String>>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    fail: Arc<HashMap<String, usize>>,
}

impl Receiver {
    async fn serve(self) -> String {
        async fn hook(
            State(r): State<Receiver>,
            Path(name): Path<String>,
            body: String,
        ) -> (StatusCode, &'static str) {
            let n = {
                let mut hits = r.hits.lock().unwrap();
                let n = hits.entry(name.clone()).or_default();
                *n += 1;
                *n
            };
            if n <= r.fail.get(&name).copied().unwrap_or(0) {
                return (StatusCode::INTERNAL_SERVER_ERROR, "boom");
            }
            r.bodies.lock().unwrap().entry(name).or_default().push(body);
            (StatusCode::OK, "ok")
        }
        let app = axum::Router::new()
            .route("/{name}", axum::routing::post(hook))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn bodies(&self, name: &str) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

/// A minimal SMTP server that accepts every message and keeps its DATA.
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let messages = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let kept = messages.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            write.write_all(b"354 go ahead\r\n").await.unwrap();
                            let mut data = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            kept.lock().unwrap().push(data);
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, messages)
}

fn hook(name: &str, kind: ChannelKind, base: &str) -> Channel {
    Channel {
        name: name.into(),
        kind,
        url: Some(Secret::new(format!("{base}/{name}"))),
        to: vec![],
        digests: true,
        alerts: true,
    }
}

fn notifier(channels: Vec<Channel>, smtp: Option<Smtp>) -> Notifier {
    Notifier {
        channels,
        smtp,
        base_url: Some("https://ops.example.com".into()),
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(1),
        },
        ..Notifier::default()
    }
}

async fn notifications(app: &TestApp) -> Vec<NotificationView> {
    app.get("/api/v1/notifications?limit=500")
        .await
        .json::<app::dto::NotificationsView>()
        .await
        .unwrap()
        .notifications
}

/// Waits (up to 20 s) until no delivery is pending or being sent.
async fn settled(app: &TestApp) -> Vec<NotificationView> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = notifications(app).await;
        let busy = list
            .iter()
            .flat_map(|n| &n.deliveries)
            .any(|d| d.status == "pending" || d.status == "sending");
        if !busy {
            return list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deliveries did not settle: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_digest_reaches_every_channel_ranked_by_money_with_retries_recorded() {
    let receiver = Receiver {
        fail: Arc::new(HashMap::from([
            ("generic".to_string(), 2),
            ("broken".to_string(), usize::MAX),
        ])),
        ..Receiver::default()
    };
    let base = receiver.clone().serve().await;
    let (smtp_port, mail) = smtp_sink().await;
    let mut email = hook("managers", ChannelKind::Email, &base);
    email.url = None;
    email.to = vec!["dc-managers@example.com".into()];
    let app = spawn_app_notifying(
        20_000,
        notifier(
            vec![
                hook("slack", ChannelKind::Slack, &base),
                hook("generic", ChannelKind::Json, &base),
                hook("broken", ChannelKind::Json, &base),
                email,
            ],
            Some(Smtp {
                host: "127.0.0.1".into(),
                port: smtp_port,
                security: "none".into(),
                username: None,
                password: None,
                from: "opsight@example.com".into(),
                trust: Default::default(),
            }),
        ),
    )
    .await;
    // Unit costs, so causes and cards carry money at stake.
    let costs: Vec<Value> = app::ssr::data::seed::CATEGORIES
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"category": c, "unit_cost": 5.0 + 10.0 * i as f64}))
        .collect();
    let r = app
        .http
        .put(format!("{}/api/v1/unit-costs", app.base))
        .json(&costs)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = app.post_json("/api/v1/digests", &json!({})).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["notification_id"]
        .as_str()
        .unwrap()
        .to_string();
    let list = settled(&app).await;
    let n = list
        .iter()
        .find(|n| n.id == id)
        .expect("the digest is listed");
    assert_eq!(n.kind, "digest");
    assert!(n.generation_ms.is_some_and(|ms| ms > 0.0));
    let by_channel: HashMap<&str, _> = n
        .deliveries
        .iter()
        .map(|d| (d.channel.as_str(), d))
        .collect();
    assert_eq!(by_channel.len(), 4);
    let slack = by_channel["slack"];
    assert_eq!(
        (slack.status.as_str(), slack.attempts, slack.http_status),
        ("sent", 1, Some(200))
    );
    // Failed twice, then delivered: three attempts, no error left.
    let generic = by_channel["generic"];
    assert_eq!((generic.status.as_str(), generic.attempts), ("sent", 3));
    assert_eq!(generic.last_error, None);
    assert_eq!(receiver.hits("generic"), 3);
    // Never succeeds: given up after the policy's three attempts, with the reason.
    let broken = by_channel["broken"];
    assert_eq!(
        (broken.status.as_str(), broken.attempts, broken.http_status),
        ("failed", 3, Some(500))
    );
    assert_eq!(
        broken.last_error.as_deref(),
        Some("the webhook answered HTTP 500: boom")
    );
    assert_eq!(receiver.hits("broken"), 3);
    let managers = by_channel["managers"];
    assert_eq!(
        (managers.status.as_str(), managers.attempts),
        ("sent", 1),
        "{managers:?}"
    );

    // What the digest should hold: every off-target or unusual card on the dashboard.
    let dashboard: Dashboard = app.get("/api/v1/dashboard").await.json().await.unwrap();
    let expected: usize = std::iter::once(&dashboard.network)
        .chain(&dashboard.sites)
        .flat_map(|r| &r.tiles)
        .filter(|t| app::ssr::notify::digests::needs_attention(t))
        .count();
    assert!(expected > 0, "the demo network has cards needing attention");

    let generic: Value = serde_json::from_str(&receiver.bodies("generic")[0]).unwrap();
    assert_eq!(generic["type"], "opsight.digest");
    let digest: app::domain::digest::Digest =
        serde_json::from_value(generic["digest"].clone()).unwrap();
    assert_eq!(digest.items.len() + digest.more, expected);
    assert_eq!(digest.period, dashboard.period.label);
    let money: Vec<f64> = digest
        .items
        .iter()
        .map(|i| i.money_at_stake.unwrap_or(-1.0))
        .collect();
    assert!(money[0] > 0.0, "money at stake with unit costs: {money:?}");
    assert!(
        money.windows(2).all(|w| w[0] >= w[1]),
        "ranked by money: {money:?}"
    );
    assert!(digest.items.iter().all(|i| i
        .link
        .as_deref()
        .is_some_and(|l| l.starts_with("https://ops.example.com/kpi/"))));

    // Slack got the same digest in its own shape.
    let slack: Value = serde_json::from_str(&receiver.bodies("slack")[0]).unwrap();
    assert_eq!(slack, app::domain::digest::slack(&digest));
    let blocks = slack["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks.len(), digest.items.len() + 2);

    // The e-mail went through SMTP as HTML, to the channel's recipients.
    let mails = mail.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].contains("Content-Type: text/html"),
        "{}",
        &mails[0][..400.min(mails[0].len())]
    );
    assert!(mails[0].contains("dc-managers@example.com"));
    assert!(mails[0].contains(&format!("Subject: {}", digest.title)));
    // The stored e-mail body is served for preview.
    let html = app.get(&format!("/api/v1/notifications/{id}/email")).await;
    assert_eq!(html.status(), 200);
    assert_eq!(
        html.text().await.unwrap(),
        app::domain::digest::html(&digest)
    );

    // Webhook addresses never leave the server.
    let page = app.get("/notifications").await.text().await.unwrap();
    let api = app.get("/api/v1/notifications").await.text().await.unwrap();
    for shown in [&page, &api] {
        assert!(!shown.contains(&base), "a webhook address was shown");
    }
    assert!(page.contains("generic"), "channels are listed by name");
}

/// An edit of the OTIF trigger's level, so every card's trigger state flips.
async fn set_level(app: &TestApp, version: &mut i64, level: f64, op: &str) {
    let r = app
        .post_json(
            "/api/v1/rules/edits",
            &json!({"op": op, "expected_version": *version, "item": {"type": "trigger",
                "key": "otif_level", "metric": "otif", "condition": "below", "value": level,
                "periods": 1, "description": "test"}}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    *version += 1;
}

async fn check(app: &TestApp) -> usize {
    let r = app.post_json("/api/v1/alerts/check", &json!({})).await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["queued"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn alerts_go_out_on_state_change_only_and_pause_while_a_trigger_flaps() {
    let receiver = Receiver::default();
    let base = receiver.clone().serve().await;
    let mut digests_only = hook("digests", ChannelKind::Slack, &base);
    digests_only.alerts = false;
    let app = spawn_app_notifying(
        20_000,
        notifier(
            vec![hook("alerts", ChannelKind::Json, &base), digests_only],
            None,
        ),
    )
    .await;
    let mut version = 1;
    // Only our trigger fires for OTIF.
    let r = app
        .post_json(
            "/api/v1/rules/edits",
            &json!({"op": "disable", "expected_version": 1, "item": {"type": "trigger",
                "key": "otif_drop_trigger_pp", "metric": "otif", "condition": "drop", "value": 3,
                "periods": 1, "description": ""}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    version += 1;

    // Baseline: whatever fires now (other KPIs' triggers) is told once, then nothing.
    check(&app).await;
    assert_eq!(
        check(&app).await,
        0,
        "unchanged inputs are not an observation"
    );
    let network_otif = |list: &[NotificationView]| -> Vec<String> {
        let mut v: Vec<(String, String)> = list
            .iter()
            .filter(|n| {
                n.kind == "alert"
                    && n.site.as_deref() == Some("network")
                    && n.metric.as_deref() == Some("otif")
            })
            .map(|n| (n.created_at.clone(), n.notice.clone().unwrap_or_default()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, k)| k).collect()
    };

    // Below 0 % never fires; below 100 % fires wherever any line failed.
    set_level(&app, &mut version, 0.0, "create").await;
    check(&app).await;
    let mut told = Vec::new();
    for step in 0..8 {
        let level = if step % 2 == 0 { 100.0 } else { 0.0 };
        set_level(&app, &mut version, level, "update").await;
        check(&app).await;
        // A refresh of the card is not a change of state: no second notice.
        if step == 0 {
            let r = app.refresh("network", "otif").await;
            assert_eq!(r.status(), 200);
            assert_eq!(check(&app).await, 0, "a refresh does not alert again");
        }
        told = network_otif(&settled(&app).await);
    }
    assert_eq!(
        told,
        ["fired", "resolved", "fired", "flapping"],
        "oscillating trigger"
    );

    let list = settled(&app).await;
    let alerts: Vec<&NotificationView> = list.iter().filter(|n| n.kind == "alert").collect();
    let fired = alerts
        .iter()
        .find(|n| n.site.as_deref() == Some("network") && n.notice.as_deref() == Some("fired"))
        .unwrap();
    assert!(
        fired.title.contains("trigger otif_level fired"),
        "{}",
        fired.title
    );
    // Alerts go to the alert channel only, and every one arrived.
    assert!(alerts
        .iter()
        .all(|n| n.deliveries.len() == 1 && n.deliveries[0].channel == "alerts"));
    assert!(alerts.iter().all(|n| n.deliveries[0].status == "sent"));
    assert_eq!(receiver.bodies("alerts").len(), alerts.len());
    assert!(receiver.bodies("digests").is_empty());
    let body: Value = serde_json::from_str(&receiver.bodies("alerts")[0]).unwrap();
    assert_eq!(body["type"], "opsight.digest");
    assert_eq!(body["digest"]["items"].as_array().unwrap().len(), 1);
}
