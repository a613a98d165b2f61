//! The pub and push modes: a PUB (or PUSH) socket sending numbered
//! messages on a few topics, next to a REP socket that answers the mesh's
//! health probe. PUB drops what no subscriber takes; PUSH waits for a
//! worker and hands each message to exactly one.

use std::time::Duration;

use anyhow::Context;
use zeromq::{PubSocket, PushSocket, Socket, SocketSend, ZmqError, ZmqMessage};

use super::load::published_body;
use super::serve;

pub struct Config {
    pub bind: String,
    pub health_bind: String,
    pub name: String,
    pub topics: Vec<String>,
    /// Rounds per second (one message per topic each); 0: no pause.
    pub rate_hz: f64,
    /// Messages per topic, then idle; 0: forever.
    pub count: u64,
}

/// The pause between rounds; `None` for as fast as possible.
pub fn period(rate_hz: f64) -> anyhow::Result<Option<Duration>> {
    if !rate_hz.is_finite() || rate_hz < 0.0 {
        anyhow::bail!("the rate must be a number of messages per second, 0 or more, not {rate_hz}");
    }
    if rate_hz == 0.0 {
        return Ok(None);
    }
    let period = Duration::try_from_secs_f64(1.0 / rate_hz)
        .with_context(|| format!("a rate of {rate_hz} per second is too low"))?;
    // Rates beyond a billion per second round to no pause at all.
    Ok((!period.is_zero()).then_some(period))
}

/// Serves until the process is stopped: after `count` rounds the PUB
/// socket stays bound (subscribers stay connected) and health is still
/// answered.
pub async fn serve_pub(config: &Config) -> anyhow::Result<()> {
    if config.topics.is_empty() {
        anyhow::bail!("no topics to publish on (DEMO_TOPICS is empty)");
    }
    let period = period(config.rate_hz)?;
    let mut socket = PubSocket::new();
    let bound = socket
        .bind(&config.bind)
        .await
        .with_context(|| format!("cannot bind PUB socket to {}", config.bind))?;
    tracing::info!(endpoint = %bound, "PUB socket listening");
    let health = serve::bind_rep(&config.health_bind).await?;
    tokio::select! {
        served = serve::serve_rep(health, |body| serve::echo_reply(body, &config.name)) => served,
        published = publish(socket, config, period) => published,
    }
}

/// The push mode: as [`serve_pub`], with a PUSH socket.
pub async fn serve_push(config: &Config) -> anyhow::Result<()> {
    if config.topics.is_empty() {
        anyhow::bail!("no topics to push on (DEMO_TOPICS is empty)");
    }
    let period = period(config.rate_hz)?;
    let mut socket = PushSocket::new();
    let bound = socket
        .bind(&config.bind)
        .await
        .with_context(|| format!("cannot bind PUSH socket to {}", config.bind))?;
    tracing::info!(endpoint = %bound, "PUSH socket listening");
    let health = serve::bind_rep(&config.health_bind).await?;
    tokio::select! {
        served = serve::serve_rep(health, |body| serve::echo_reply(body, &config.name)) => served,
        pushed = publish(socket, config, period) => pushed,
    }
}

async fn publish<S: SocketSend>(
    mut socket: S,
    config: &Config,
    period: Option<Duration>,
) -> anyhow::Result<()> {
    let mut ticks = period.map(|period| {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    tracing::info!(
        topics = ?config.topics,
        rate_hz = config.rate_hz,
        count = config.count,
        "publishing"
    );
    let mut seq: u64 = 0;
    while config.count == 0 || seq < config.count {
        match ticks.as_mut() {
            Some(ticks) => {
                ticks.tick().await;
            }
            // The PUB socket's send never waits; without this, the health
            // socket on the same thread would never be served.
            None => tokio::task::yield_now().await,
        }
        for topic in &config.topics {
            let mut message = ZmqMessage::from(topic.clone());
            message.push_back(published_body(&config.name, seq).into_bytes().into());
            // Like libzmq's PUB, a PUB drops what a subscriber cannot
            // take; an error there concerns no one in particular. A PUSH
            // with no worker connected hands the message back: keep it
            // until one is.
            let mut message = message;
            loop {
                match socket.send(message).await {
                    Ok(()) => break,
                    Err(ZmqError::ReturnToSender { message: back, .. }) => {
                        message = back;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "send failed");
                        break;
                    }
                }
            }
        }
        seq += 1;
    }
    tracing::info!(
        per_topic = seq,
        "published every message; idle, still answering health"
    );
    // Keep the socket (and its subscribers' connections) until stopped.
    std::future::pending::<()>().await;
    drop(socket);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_become_periods() {
        assert_eq!(period(0.0).unwrap(), None);
        assert_eq!(period(10.0).unwrap(), Some(Duration::from_millis(100)));
        assert_eq!(period(0.5).unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(period(1e300).unwrap(), None);
        assert!(period(-1.0).is_err());
        assert!(period(f64::NAN).is_err());
        assert!(period(f64::INFINITY).is_err());
        assert!(period(1e-300).is_err());
    }
}
