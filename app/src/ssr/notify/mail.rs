//! E-mail over SMTP (optional: only when `[smtp]` is configured), for digest and alert
//! channels of kind `email`. Errors are safe to store: no password, no server banner.

use super::Smtp;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// Sends one HTML message to `to`.
pub async fn send(
    smtp: &Smtp,
    to: &[String],
    subject: &str,
    html: &str,
    timeout: Duration,
) -> Result<(), String> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|_| format!("smtp.from '{}' is not an e-mail address", smtp.from))?;
    let mut message = Message::builder().from(from).subject(subject);
    for t in to {
        let mailbox: Mailbox = t
            .parse()
            .map_err(|_| format!("'{t}' is not an e-mail address"))?;
        message = message.to(mailbox);
    }
    let message = message
        .header(ContentType::TEXT_HTML)
        .body(html.to_string())
        .map_err(|e| format!("the message could not be built: {e}"))?;
    let builder = match smtp.security.as_str() {
        "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host),
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
        _ => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            &smtp.host,
        )),
    }
    .map_err(|e| format!("smtp server '{}': {e}", smtp.host))?;
    let mut builder = builder.port(smtp.port).timeout(Some(timeout));
    if !smtp.trust.is_empty() {
        // The relay's certificate may be signed by the company CA of OPSIGHT_CA_BUNDLE.
        let tls = smtp.trust.smtp(&smtp.host)?;
        builder = match smtp.security.as_str() {
            "starttls" => builder.tls(Tls::Required(tls)),
            "tls" => builder.tls(Tls::Wrapper(tls)),
            _ => builder,
        };
    }
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    // lettre's timeout covers the connection only: bound the whole exchange, or a relay
    // that stalls after its greeting would hold this replica's sender forever.
    let sent = tokio::time::timeout(timeout, builder.build().send(message))
        .await
        .map_err(|_| {
            format!(
                "the SMTP server {}:{} did not finish within {} s",
                smtp.host,
                smtp.port,
                timeout.as_secs()
            )
        })?;
    sent.map(|_| ()).map_err(|e| {
        let kind = if e.is_permanent() {
            "refused"
        } else if e.is_transient() {
            "temporarily refused"
        } else {
            "failed"
        };
        format!("sending e-mail through {}:{} {kind}", smtp.host, smtp.port)
    })
}
