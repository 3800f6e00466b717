//! `/api/v1`: the JSON API's handlers, each one line: extract the operation's typed input,
//! call its service, [`reply`]. Which handler serves which method and path, its access
//! policy, its status and its OpenAPI entry are in [`super::operations`], one row per
//! operation.
//!
//! Errors are JSON `{"error": "..."}` with the status of [`AppError::status_code`], the
//! same mapping the server functions use: 400 bad input, 401 not signed in, 403 role too
//! low or cross-site, 404 unknown site, metric or id, 409 a lost race (the rules or the
//! job moved on), 413 too large, 429 rate-limited, 502 the agent failed.

use app::domain::access::Reach;
use app::domain::status::{RunOrigin, SyncTrigger};
use app::dto::*;
use app::error::AppError;
use app::ssr::access::{actor_of, reach_of, Principal};
use app::ssr::state::AppState;
use app::ssr::{data, ops, ServiceError};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Json;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The API's error: the safe [`AppError`] (internal causes were logged when it was made),
/// as JSON with its status.
pub struct ApiError(AppError);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError(e.into())
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (
            status,
            Json(serde_json::json!({"error": self.0.to_string()})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"opsight\""),
            );
        }
        r
    }
}

/// A service's result as JSON (the operation's row sets the success status).
pub fn reply<T: Serialize>(result: Result<T, ServiceError>) -> Result<Json<T>, ApiError> {
    Ok(Json(result?))
}

/// The principal the guard attached (absent only on public routes).
pub struct Who(pub Option<Principal>);

impl Who {
    pub fn actor(&self) -> String {
        actor_of(self.0.as_ref())
    }

    /// The sites it may see.
    pub fn reach(&self) -> Reach {
        reach_of(self.0.as_ref())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Who(parts.extensions.get::<Principal>().cloned()))
    }
}

/// A JSON body of the operation's input type, or 400 saying what was expected (the
/// shape is read from the type's schema: `{site, metric, question?}`).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + JsonSchema, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(body_error::<T>(e)),
        }
    }
}

/// [`Body`] that may be left out: no body at all is the input's default (for operations
/// whose every field is optional, so `curl -X POST` works).
pub struct OptionalBody<T>(pub T);

impl<T: DeserializeOwned + JsonSchema + Default, S: Send + Sync> FromRequest<S>
    for OptionalBody<T>
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, crate::MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                ApiError(AppError::TooLarge(format!(
                    "the request body is larger than {} MiB",
                    crate::MAX_BODY_BYTES / (1024 * 1024)
                )))
            })?;
        // Empty (whatever the headers say) is the default; anything else must be the
        // input's JSON, with `Body`'s checks and messages.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        Body::<T>::from_request(req, state)
            .await
            .map(|Body(v)| OptionalBody(v))
    }
}

fn body_error<T: JsonSchema>(e: JsonRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError(AppError::TooLarge(format!(
            "the request body is larger than {} MiB",
            crate::MAX_BODY_BYTES / (1024 * 1024)
        )));
    }
    ApiError(AppError::BadRequest(format!(
        "expected JSON {}: {}",
        shape::<T>(),
        e.body_text()
    )))
}

/// A JSON value's shape from its schema, for error messages: `{a, b?}`, `[{…}]`.
fn shape<T: JsonSchema>() -> String {
    let schema = schemars::generate::SchemaSettings::default()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>();
    fn describe(v: &serde_json::Value) -> String {
        if let Some(items) = v.get("items") {
            return format!("[{}]", describe(items));
        }
        let Some(props) = v.get("properties").and_then(|p| p.as_object()) else {
            return v
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("a value")
                .to_string();
        };
        let required: Vec<&str> = v
            .get("required")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        let fields: Vec<String> = props
            .keys()
            .map(|k| {
                if required.contains(&k.as_str()) {
                    k.clone()
                } else {
                    format!("{k}?")
                }
            })
            .collect();
        format!("{{{}}}", fields.join(", "))
    }
    describe(&schema.to_value())
}

/// Query parameters of the operation's input type, or 400 saying why not.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e: QueryRejection| ApiError(AppError::BadRequest(e.body_text())))
    }
}

type Handler = MethodRouter<AppState>;
type St = State<AppState>;

pub fn dashboard(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Params(q): Params<DashboardQuery>| async move {
            reply(s.cards().dashboard(q, &w.reach()).await)
        },
    )
}

pub fn evidence(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Params(q): Params<EvidenceQuery>| async move {
            reply(s.cards().evidence(q, &w.reach()).await)
        },
    )
}

pub fn insights(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Params(q): Params<InsightsQuery>| async move {
            reply(s.cards().insights(q, &w.reach()).await)
        },
    )
}

pub fn refresh_insight(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Body(b): Body<RefreshRequest>| async move {
            reply(s.cards().refresh(b, &w.reach()).await)
        },
    )
}

pub fn lineage(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Path(id): Path<String>| async move {
            reply(s.cards().lineage(&id, &w.reach()).await)
        },
    )
}

pub fn insight_feedback(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Path(id): Path<String>| async move {
            reply(s.cards().feedback(&id, &w.reach()).await)
        },
    )
}

pub fn give_feedback(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Path(id): Path<String>, Body(b): Body<FeedbackInput>| async move {
            reply(
                s.cards()
                    .give_feedback(&id, b, &w.actor(), &w.reach())
                    .await,
            )
        },
    )
}

pub fn update_action(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St,
         w: Who,
         Path((id, position)): Path<(String, i64)>,
         Body(b): Body<ActionChange>| async move {
            reply(s.cards().update_action(&id, position, b, &w.reach()).await)
        },
    )
}

pub fn ask_question(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Body(b): Body<StartConversation>| async move {
            reply(
                s.cards()
                    .start_conversation(b, &w.actor(), &w.reach())
                    .await,
            )
        },
    )
}

pub fn conversation(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Path(id): Path<String>| async move {
            reply(s.cards().conversation(&id, &w.reach()).await)
        },
    )
}

pub fn ask_follow_up(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Path(id): Path<String>, Body(b): Body<FollowUp>| async move {
            reply(s.cards().follow_up(&id, b, &w.actor(), &w.reach()).await)
        },
    )
}

/// The turn's events as SSE. Each event is sent as soon as it exists (no buffering
/// layer: compression is skipped for `text/event-stream`).
pub fn turn_events(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Path(id): Path<String>| async move {
            let rx = s.cards().turn_events(&id, &w.reach()).await?;
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                let event = rx.recv().await?;
                let data = serde_json::to_string(&event).unwrap_or_default();
                Some((
                    Ok::<_, std::convert::Infallible>(Event::default().data(data)),
                    rx,
                ))
            });
            Ok::<_, ApiError>(Sse::new(stream).keep_alive(KeepAlive::default()))
        },
    )
}

pub fn agents(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, Params(q): Params<AgentsQuery>| async move {
            Json(ops::agents(s.agents(), q).await)
        },
    )
}

pub fn schedules(m: MethodFilter) -> Handler {
    on(m, |State(s): St| async move {
        reply(s.schedules().list().await)
    })
}

pub fn create_schedule(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Body(b): Body<ScheduleInput>| async move {
            reply(s.schedules().create(b, &w.actor()).await)
        },
    )
}

pub fn preview_schedule(m: MethodFilter) -> Handler {
    // The editor's server function takes the verdict as it is; over REST an invalid
    // expression is a 400 that says why.
    on(m, |Body(b): Body<PreviewRequest>| async move {
        let p = app::ssr::runs::schedules::preview(&b.cron, &b.timezone);
        reply(match p.error {
            Some(why) => Err(ServiceError::BadRequest(why)),
            None => Ok(p),
        })
    })
}

pub fn schedule(m: MethodFilter) -> Handler {
    on(m, |State(s): St, Path(id): Path<String>| async move {
        reply(s.schedules().get(&id).await)
    })
}

pub fn update_schedule(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Path(id): Path<String>, Body(b): Body<ScheduleInput>| async move {
            reply(s.schedules().update(&id, b, &w.actor()).await)
        },
    )
}

pub fn delete_schedule(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Path(id): Path<String>| async move {
            reply(s.schedules().delete(&id, &w.actor()).await)
        },
    )
}

pub fn run_schedule(m: MethodFilter) -> Handler {
    on(m, |State(s): St, Path(id): Path<String>| async move {
        reply(s.schedules().run_now(&id).await)
    })
}

pub fn runs(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Params(q): Params<RunsQuery>| async move {
            reply(s.runs().list(q, &w.reach()).await)
        },
    )
}

pub fn start_run(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Body(b): Body<RunRequest>| async move {
            reply(s.runs().start(b, RunOrigin::Manual, &w.reach()).await)
        },
    )
}

pub fn run_detail(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Path(id): Path<String>| async move {
            reply(s.runs().detail(&id, &w.reach()).await)
        },
    )
}

pub fn unit_costs(m: MethodFilter) -> Handler {
    on(m, |State(s): St| async move {
        reply(data::costs::list(s.db()).await)
    })
}

pub fn save_unit_costs(m: MethodFilter) -> Handler {
    on(m, |State(s): St, Body(b): Body<Vec<UnitCost>>| async move {
        reply(data::costs::put(s.db(), b).await)
    })
}

pub fn sites(m: MethodFilter) -> Handler {
    on(m, |State(s): St, w: Who| async move {
        reply(data::sites::list(s.db(), &w.reach()).await)
    })
}

pub fn save_sites(m: MethodFilter) -> Handler {
    on(m, |State(s): St, Body(b): Body<Vec<SiteInfo>>| async move {
        reply(data::sites::put(s.db(), b).await)
    })
}

pub fn sources(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St| async move { reply(s.sources().list().await) },
    )
}

pub fn source_syncs(m: MethodFilter) -> Handler {
    on(m, |State(s): St, Path(name): Path<String>| async move {
        reply(s.sources().history(&name).await)
    })
}

pub fn sync_source(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St,
         w: Who,
         Path(name): Path<String>,
         OptionalBody(b): OptionalBody<SyncRequest>| async move {
            reply(
                s.sources()
                    .sync(&name, SyncTrigger::Manual, Some(&w.actor()), b.wait)
                    .await,
            )
        },
    )
}

pub fn rules(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St| async move { reply(s.rules().view().await) },
    )
}

pub fn edit_rules(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Body(b): Body<app::domain::rulebook::RuleEdit>| async move {
            reply(s.rules().edit(b, &w.actor()).await)
        },
    )
}

pub fn send_digest(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, OptionalBody(b): OptionalBody<DigestRequest>| async move {
            reply(s.notify().send_digest(b).await)
        },
    )
}

/// The digest as a channel of the given format would get it (JSON, or HTML for e-mail).
pub fn preview_digest(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Params(q): Params<DigestFormat>| async move {
            let (content_type, body) = s.notify().preview_digest(q, &w.reach()).await?;
            Ok::<_, ApiError>(([(header::CONTENT_TYPE, content_type)], body))
        },
    )
}

pub fn check_alerts(m: MethodFilter) -> Handler {
    on(m, |State(s): St| async move {
        reply(s.notify().check_alerts().await)
    })
}

pub fn notifications(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, Params(q): Params<NotificationsQuery>| async move {
            reply(s.notify().notifications(q).await)
        },
    )
}

pub fn notification_email(m: MethodFilter) -> Handler {
    on(m, |State(s): St, Path(id): Path<String>| async move {
        let html = s.notify().email(&id).await?;
        Ok::<_, ApiError>(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html))
    })
}

pub fn me(m: MethodFilter) -> Handler {
    on(m, |w: Who| async move {
        w.0.map(|p| Json(p.me()))
            .ok_or_else(|| ApiError(AppError::Unauthorized("not signed in".into())))
    })
}

pub fn users(m: MethodFilter) -> Handler {
    on(m, |State(s): St| async move {
        reply(s.accounts().users().await)
    })
}

pub fn create_user(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Body(b): Body<NewUser>| async move {
            reply(s.accounts().add_user(b, &w.actor()).await)
        },
    )
}

pub fn update_user(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Path(username): Path<String>, Body(b): Body<UserChange>| async move {
            reply(s.accounts().update_user(&username, b, &w.actor()).await)
        },
    )
}

pub fn tokens(m: MethodFilter) -> Handler {
    on(m, |State(s): St| async move {
        reply(s.accounts().tokens().await)
    })
}

/// The secret is in this response only; it cannot be shown again.
pub fn create_token(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Body(b): Body<NewToken>| async move {
            let creator =
                w.0.ok_or_else(|| ApiError(AppError::Unauthorized("not signed in".into())))?;
            reply(s.accounts().create_token(b, &creator).await)
        },
    )
}

pub fn revoke_token(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, w: Who, Path(id): Path<String>| async move {
            reply(s.accounts().revoke_token(&id, &w.actor()).await)
        },
    )
}

pub fn audit(m: MethodFilter) -> Handler {
    on(
        m,
        |State(s): St, Params(q): Params<AuditQuery>| async move { reply(s.accounts().audit(q).await) },
    )
}

pub fn openapi(m: MethodFilter) -> Handler {
    on(m, || async { Json(super::openapi::document().clone()) })
}
