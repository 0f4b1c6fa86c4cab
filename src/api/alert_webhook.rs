//! Forwards alert changes to the configured webhook.

use std::time::Duration;

use tokio::sync::mpsc;

use contimg_control::alerts::AlertChange;

/// Starts the webhook sender; returns the queue the engine's changes go into.
/// Delivery: http only (reqwest is built without TLS), 5 s timeout, 3 attempts
/// with back-off; a full queue drops the notification with a log line rather
/// than delaying the daemon.
pub fn spawn_webhook(url: Option<String>) -> Option<mpsc::Sender<AlertChange>> {
    let url = url?;
    let (tx, mut rx) = mpsc::channel::<AlertChange>(256);
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
        {
            Ok(client) => client,
            Err(err) => {
                tracing::error!(%err, "cannot build the webhook client; alerts are not forwarded");
                return;
            }
        };
        while let Some(change) = rx.recv().await {
            let mut delay = Duration::from_millis(500);
            for attempt in 1..=3 {
                match client.post(&url).json(&change).send().await {
                    Ok(resp) if resp.status().is_success() => break,
                    Ok(resp) => {
                        tracing::warn!(status = %resp.status(), attempt, "webhook refused the alert")
                    }
                    Err(err) => tracing::warn!(%err, attempt, "webhook delivery failed"),
                }
                if attempt < 3 {
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
            }
        }
    });
    Some(tx)
}
