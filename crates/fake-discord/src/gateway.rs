//! The fake's gateway: one WebSocket per connection, speaking Discord's gateway protocol v10 in JSON text frames.
//!
//! A connection gets HELLO (op 10) with the heartbeat interval; IDENTIFY (op 2) with the right token starts a
//! session and gets READY, a wrong one is closed with 4004; RESUME (op 6) of a known session replays the
//! dispatches after the client's sequence number and sends RESUMED, an unknown one gets INVALID_SESSION (op 9);
//! every HEARTBEAT (op 1) gets an ACK (op 11). The connection whose session is live receives the dispatches tests
//! ask for; dispatches made while no connection is live wait for the next one. Events Discord sends only to
//! sessions that asked for them in IDENTIFY's `intents` (a message in a direct message needs `DIRECT_MESSAGES`, a
//! reaction there `DIRECT_MESSAGE_REACTIONS`) are dropped for a session without that intent, as Discord never sends
//! them. A [`Fault`] breaks the live connection the way Discord can.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::{Shared, payloads};

/// Ways the gateway can break a live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the WebSocket with this close code (4000: unknown error, which clients resume after).
    Close(u16),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Send op 7 RECONNECT: the client should reconnect and resume.
    Reconnect,
    /// Send op 9 INVALID_SESSION; unless resumable, the session is forgotten and the client must identify again.
    InvalidSession { resumable: bool },
}

/// What the gateway has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayStats {
    pub connections: u64,
    /// Sessions started with IDENTIFY (and READY).
    pub identifies: u64,
    /// Sessions resumed with RESUME (and RESUMED).
    pub resumes: u64,
    /// IDENTIFYs refused with a close code.
    pub refused: u64,
    pub heartbeats: u64,
    /// Whether a connection with a session is open now: dispatches reach the bot at once.
    pub live: bool,
}

/// The gateway intent (`1 << 12`) without which Discord sends no MESSAGE_CREATE from a direct message.
pub(crate) const DIRECT_MESSAGES: u64 = 1 << 12;
/// The gateway intent (`1 << 13`) without which Discord sends no reaction events from a direct message.
pub(crate) const DIRECT_MESSAGE_REACTIONS: u64 = 1 << 13;
/// The gateway intent (`1 << 9`) without which Discord sends no MESSAGE_CREATE from a server's channels and threads.
pub(crate) const GUILD_MESSAGES: u64 = 1 << 9;
/// The privileged intent (`1 << 15`) without which a server's messages arrive with no content (except the bot's own
/// and those that mention it); IDENTIFY with it is refused (4014) unless the application has it enabled.
pub(crate) const MESSAGE_CONTENT: u64 = 1 << 15;

#[derive(Debug, Default)]
struct Session {
    /// The `intents` its IDENTIFY asked for.
    intents: u64,
    seq: u64,
    /// Every dispatch of the session with its sequence number, for replay on RESUME.
    log: Vec<(u64, Value)>,
}

/// What a connection's task is told to send.
#[derive(Debug)]
enum Outgoing {
    Frame(Value),
    Fault(Fault),
}

#[derive(Debug)]
struct Live {
    connection: u64,
    session: String,
    sender: mpsc::UnboundedSender<Outgoing>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    stats: GatewayStats,
    pub(crate) refuse_next_identify: Option<u16>,
    sessions: HashMap<String, Session>,
    live: Option<Live>,
    /// Dispatches made while no connection was live, as (event name, data, the intent they need).
    pending: Vec<(String, Value, Option<u64>)>,
    /// A fault asked for while no connection was live.
    pending_fault: Option<Fault>,
}

impl State {
    pub(crate) fn stats(&self) -> GatewayStats {
        GatewayStats { live: self.live.is_some(), ..self.stats.clone() }
    }

    /// Appends a dispatch to the live session and sends it; false when no connection is live. A dispatch that needs
    /// an `intent` the session did not ask for is dropped (true: nothing is left to send).
    fn send_dispatch(&mut self, event: &str, data: Value, intent: Option<u64>) -> bool {
        let Some(live) = &self.live else { return false };
        let session = self.sessions.entry(live.session.clone()).or_default();
        if intent.is_some_and(|intent| session.intents & intent == 0) {
            return true;
        }
        session.seq += 1;
        let mut data = data;
        if event == "MESSAGE_CREATE" && session.intents & MESSAGE_CONTENT == 0 && data.get("member").is_some() {
            // A member's message in a server, to a session without the Message Content intent.
            data["content"] = "".into();
            for field in ["embeds", "attachments", "components"] {
                data[field] = Value::Array(Vec::new());
            }
        }
        let frame = json!({"op": 0, "s": session.seq, "t": event, "d": data});
        session.log.push((session.seq, frame.clone()));
        live.sender.send(Outgoing::Frame(frame)).is_ok()
    }

    /// Makes `connection` the live one for `session`, sends `first` (READY or RESUMED), then what waited.
    fn go_live(&mut self, live: Live, first: (&str, Value)) {
        self.live = Some(live);
        self.send_dispatch(first.0, first.1, None);
        for (event, data, intent) in std::mem::take(&mut self.pending) {
            self.send_dispatch(&event, data, intent);
        }
        if let (Some(fault), Some(live)) = (self.pending_fault.take(), &self.live) {
            let _ = live.sender.send(Outgoing::Fault(fault));
        }
    }
}

pub(crate) fn dispatch(shared: &Shared, event: &str, data: Value) {
    dispatch_for(shared, None, event, data);
}

/// Dispatches `event` to a session that asked for `intent` (any session when `None`); a session without it never
/// sees the event.
pub(crate) fn dispatch_for(shared: &Shared, intent: Option<u64>, event: &str, data: Value) {
    let mut state = shared.state();
    if !state.gateway.send_dispatch(event, data.clone(), intent) {
        state.gateway.pending.push((event.to_owned(), data, intent));
    }
}

pub(crate) fn fault(shared: &Shared, fault: Fault) {
    let mut state = shared.state();
    let gateway = &mut state.gateway;
    // From now on dispatches wait for the connection the client makes next.
    match gateway.live.take() {
        Some(live) => {
            if let Fault::InvalidSession { resumable: false } = fault {
                gateway.sessions.remove(&live.session);
            }
            let _ = live.sender.send(Outgoing::Fault(fault));
        }
        None => gateway.pending_fault = Some(fault),
    }
}

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        let connection = shared.clone();
        shared.spawn(async move {
            if let Ok(socket) = tokio_tungstenite::accept_async(stream).await {
                run(connection, socket).await;
            }
        });
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn run(shared: Arc<Shared>, mut socket: Socket) {
    let connection = {
        let mut state = shared.state();
        state.gateway.stats.connections += 1;
        state.gateway.stats.connections
    };
    let (sender, mut outgoing) = mpsc::unbounded_channel();
    let interval = shared.options.heartbeat_interval.as_millis() as u64;
    if send(&mut socket, json!({"op": 10, "d": {"heartbeat_interval": interval}})).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let Ok(payload) = serde_json::from_str::<Value>(&text) else {
                        close(&mut socket, 4002, "Error while decoding payload.").await;
                        break;
                    };
                    if !receive(&shared, &mut socket, connection, &sender, payload).await {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Binary(_))) => {
                    close(&mut socket, 4002, "Error while decoding payload.").await;
                    break;
                }
                Some(Ok(Message::Close(_))) => {
                    // Completes the closing handshake the client started, as Discord does.
                    let _ = socket.close(None).await;
                    break;
                }
                Some(Err(_)) | None => break,
            },
            Some(out) = outgoing.recv() => match out {
                Outgoing::Frame(frame) => if send(&mut socket, frame).await.is_err() { break },
                Outgoing::Fault(Fault::Close(code)) => {
                    close(&mut socket, code, "closed by the fake").await;
                    break;
                }
                Outgoing::Fault(Fault::Drop) => break,
                Outgoing::Fault(Fault::Reconnect) => if send(&mut socket, json!({"op": 7, "d": null})).await.is_err() { break },
                Outgoing::Fault(Fault::InvalidSession { resumable }) => {
                    if send(&mut socket, json!({"op": 9, "d": resumable})).await.is_err() { break }
                }
            },
        }
    }
    let mut state = shared.state();
    if state.gateway.live.as_ref().is_some_and(|live| live.connection == connection) {
        state.gateway.live = None;
    }
}

/// Handles one payload from the client; false when the connection is to be closed.
async fn receive(
    shared: &Shared,
    socket: &mut Socket,
    connection: u64,
    sender: &mpsc::UnboundedSender<Outgoing>,
    payload: Value,
) -> bool {
    let data = &payload["d"];
    let token_ok = |token: &Value| {
        let token = token.as_str().unwrap_or_default();
        token.strip_prefix("Bot ").unwrap_or(token) == shared.options.token
    };
    match payload["op"].as_u64() {
        Some(1) => {
            shared.state().gateway.stats.heartbeats += 1;
            send(socket, json!({"op": 11})).await.is_ok()
        }
        Some(2) => {
            let refusal = shared.state().gateway.refuse_next_identify.take();
            if let Some(code) = refusal.or((!token_ok(&data["token"])).then_some(4004)) {
                shared.state().gateway.stats.refused += 1;
                close(socket, code, "Authentication failed.").await;
                return false;
            }
            let asked = data["intents"].as_u64().unwrap_or(0);
            if asked & MESSAGE_CONTENT != 0 && !shared.options.message_content {
                shared.state().gateway.stats.refused += 1;
                close(socket, 4014, "Disallowed intent(s).").await;
                return false;
            }
            let mut state = shared.state();
            state.gateway.stats.identifies += 1;
            let session = format!("fake-session-{}", payloads::snowflake());
            let intents = data["intents"].as_u64().unwrap_or(0);
            state.gateway.sessions.insert(session.clone(), Session { intents, ..Session::default() });
            let ready = payloads::ready(&shared.options, &session, &shared.gateway_url);
            state.gateway.go_live(Live { connection, session, sender: sender.clone() }, ("READY", ready));
            true
        }
        Some(6) => {
            if !token_ok(&data["token"]) {
                close(socket, 4004, "Authentication failed.").await;
                return false;
            }
            let session = data["session_id"].as_str().unwrap_or_default().to_owned();
            let after = data["seq"].as_u64().unwrap_or(0);
            let replay = {
                let state = shared.state();
                state.gateway.sessions.get(&session).map(|s| {
                    s.log.iter().filter(|(seq, _)| *seq > after).map(|(_, frame)| frame.clone()).collect::<Vec<_>>()
                })
            };
            let Some(replay) = replay else {
                return send(socket, json!({"op": 9, "d": false})).await.is_ok();
            };
            for frame in replay {
                if send(socket, frame).await.is_err() {
                    return false;
                }
            }
            let mut state = shared.state();
            state.gateway.stats.resumes += 1;
            let resumed = json!({"_trace": ["[\"gateway-prd-fake\",{\"micros\":0}]"]});
            state.gateway.go_live(Live { connection, session, sender: sender.clone() }, ("RESUMED", resumed));
            true
        }
        // Presence updates, member requests and the like change nothing here.
        Some(_) => true,
        None => {
            close(socket, 4001, "Unknown opcode.").await;
            false
        }
    }
}

async fn send(socket: &mut Socket, payload: Value) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    socket.send(Message::Text(payload.to_string())).await
}

async fn close(socket: &mut Socket, code: u16, reason: &str) {
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() };
    let _ = socket.close(Some(frame)).await;
}
