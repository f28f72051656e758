//! The demo backend without a browser: a media server in this process, the backend in front
//! of it, and WebSocket clients that speak the page's protocol. Covers what the browser test
//! cannot provoke: bad messages, errors from the media server, a room closed under the
//! backend, authentication, and an unreachable media server.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use switchboard::App;
use switchboard::client::{Client, Notification};
use switchboard::settings::Settings;
use switchboard_core::RouterId;
use switchboard_core::event::{CloseReason, Event};
use switchboard_demo::{Demo, DemoError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should happen at once; a passing test never
/// waits this long.
const DEADLINE: Duration = Duration::from_secs(10);

async fn start_server(token: &str) -> App {
    let mut config = Settings::default();
    config.server.workers = 1;
    config.rpc.listen = "127.0.0.1:0".to_owned();
    config.rpc.token = token.to_owned();
    config.metrics.listen = String::new();
    config.webrtc.listen_ip = "127.0.0.1".to_owned();
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    App::start(Arc::new(config))
        .await
        .expect("the media server starts")
}

fn rpc_addr(app: &App) -> String {
    app.rpc_tcp_addr().expect("RPC on TCP").to_string()
}

async fn start() -> (App, Demo) {
    let app = start_server("").await;
    let demo = switchboard_demo::serve("127.0.0.1:0", &rpc_addr(&app), None)
        .await
        .expect("the demo starts");
    (app, demo)
}

async fn stop(app: App, demo: Demo) {
    demo.shutdown().await.expect("the demo stops cleanly");
    app.shutdown(DEADLINE).await.expect("the server stops");
}

/// A control connection that sees every event.
async fn observer(app: &App) -> (Client, mpsc::Receiver<Notification>) {
    let client = Client::connect(&rpc_addr(app), None)
        .await
        .expect("observer connects");
    let events = client.notifications().expect("notifications");
    client.subscribe(None).await.expect("events.subscribe");
    (client, events)
}

/// Waits for the first event that `pick` accepts.
async fn event<T>(
    events: &mut mpsc::Receiver<Notification>,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            match events.recv().await {
                Some(Notification::Event(e)) => {
                    if let Some(found) = pick(&e) {
                        return found;
                    }
                }
                Some(_) => {}
                None => panic!("the observer's connection closed"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("the event in time")
}

/// A page, as far as the backend can tell.
struct Page {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Page {
    async fn open(demo: &Demo) -> Self {
        let url = format!("ws://{}/ws", demo.local_addr());
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket connects");
        Self { ws }
    }

    /// Opens a page and reads its `joined` message: (peer, room).
    async fn join(demo: &Demo) -> (Self, String, RouterId) {
        let mut page = Self::open(demo).await;
        let joined = page.next().await.expect("a joined message");
        assert_eq!(joined["type"], "joined", "{joined}");
        let peer = joined["peer"].as_str().expect("peer").to_owned();
        let room = serde_json::from_value(joined["room"].clone()).expect("room id");
        (page, peer, room)
    }

    async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }

    async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next JSON message, or `None` once the backend has closed the WebSocket.
    async fn next(&mut self) -> Option<Value> {
        let wait = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return Some(serde_json::from_str(text.as_str()).expect("JSON"));
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .expect("a message or the close in time")
    }

    /// The next message, which must be an error: its code.
    async fn error_code(&mut self) -> String {
        let message = self.next().await.expect("an error message");
        assert_eq!(message["type"], "error", "{message}");
        assert!(message["message"].as_str().is_some_and(|m| !m.is_empty()));
        message["code"].as_str().expect("code").to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_at_the_root() {
    let (app, demo) = start().await;
    let mut stream = TcpStream::connect(demo.local_addr())
        .await
        .expect("connects");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("a response in time")
        .expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: text/html")
    );
    assert!(response.contains("new RTCPeerConnection"));
    assert!(response.contains("\"/ws\""));
    stop(app, demo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_websocket_is_a_peer_of_one_room_until_it_closes() {
    let (app, demo) = start().await;
    let (_client, mut events) = observer(&app).await;
    assert_eq!(demo.room().await, None, "the room is created on first use");

    let (alice, alice_id, room) = Page::join(&demo).await;
    let (_bob, bob_id, bobs_room) = Page::join(&demo).await;
    assert_ne!(alice_id, bob_id);
    assert_eq!(room, bobs_room, "one shared room");
    assert_eq!(demo.room().await, Some(room));
    event(&mut events, |e| match e {
        Event::PeerJoined { router, peer } if *router == room && peer.0 == bob_id => Some(()),
        _ => None,
    })
    .await;

    drop(alice);
    let left = event(&mut events, |e| match e {
        Event::PeerLeft {
            router,
            peer,
            reason,
        } if *router == room => Some((peer.0.clone(), reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        left,
        (alice_id, CloseReason::Requested),
        "closing the WebSocket makes its peer leave"
    );
    stop(app, demo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_and_server_errors_come_back_as_errors_and_the_session_goes_on() {
    let (app, demo) = start().await;
    let (mut page, _, _) = Page::join(&demo).await;

    page.send_raw(Message::text("not json")).await;
    assert_eq!(page.error_code().await, "invalid_message");
    page.send(json!({ "type": "dance" })).await;
    assert_eq!(page.error_code().await, "invalid_message");
    page.send(json!({ "type": "publish" })).await;
    assert_eq!(
        page.error_code().await,
        "invalid_message",
        "sdp is required"
    );
    page.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(page.error_code().await, "invalid_message");

    // The media server's own error codes pass through.
    page.send(json!({ "type": "publish", "sdp": "this is not SDP" }))
        .await;
    assert_eq!(page.error_code().await, "invalid_sdp");

    // Still usable: a subscribe gets the server's offer.
    page.send(json!({ "type": "subscribe" })).await;
    let offer = page.next().await.expect("an offer");
    assert_eq!(offer["type"], "offer", "{offer}");
    assert!(offer["sdp"].as_str().is_some_and(|s| s.starts_with("v=0")));
    stop(app, demo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_ends_the_session_and_its_peer_leaves() {
    let (app, demo) = start().await;
    let (_client, mut events) = observer(&app).await;
    let (mut page, peer_id, room) = Page::join(&demo).await;

    let huge = json!({ "type": "publish", "sdp": "x".repeat(1 << 20) });
    // The backend may close before it has read everything; a failed send is fine too.
    let _ = page.ws.send(Message::text(huge.to_string())).await;
    assert_eq!(page.next().await, None, "the backend closes the WebSocket");
    let left = event(&mut events, |e| match e {
        Event::PeerLeft { router, peer, .. } if *router == room => Some(peer.0.clone()),
        _ => None,
    });
    assert_eq!(left.await, peer_id);
    stop(app, demo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_closed_under_the_backend_ends_its_sessions_and_is_replaced() {
    let (app, demo) = start().await;
    let (client, mut events) = observer(&app).await;
    let (mut page, _, room) = Page::join(&demo).await;

    client.close_router(room).await.expect("router.close");
    assert_eq!(page.error_code().await, "server_unavailable");
    assert_eq!(page.next().await, None, "the backend closes the WebSocket");

    let (_page, _, new_room) = Page::join(&demo).await;
    assert_ne!(new_room, room);
    event(&mut events, |e| match e {
        Event::RouterCreated { router, .. } if *router == new_room => Some(()),
        _ => None,
    })
    .await;
    stop(app, demo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_makes_the_peers_leave_and_closes_the_room() {
    let (app, demo) = start().await;
    let (_client, mut events) = observer(&app).await;
    let (mut page, peer_id, room) = Page::join(&demo).await;

    demo.shutdown().await.expect("the demo stops cleanly");
    assert_eq!(page.next().await, None, "the WebSocket is closed");
    let left = event(&mut events, |e| match e {
        Event::PeerLeft {
            router,
            peer,
            reason,
        } if *router == room => Some((peer.0.clone(), reason.clone())),
        _ => None,
    });
    // Requested: the backend let the peer leave, rather than the room's closing taking it.
    assert_eq!(left.await, (peer_id, CloseReason::Requested));
    event(&mut events, |e| match e {
        Event::RouterClosed { router, .. } if *router == room => Some(()),
        _ => None,
    })
    .await;
    app.shutdown(DEADLINE).await.expect("the server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_used_and_a_missing_server_or_wrong_token_fails_at_start() {
    let app = start_server("demo-bridge-test-token").await;
    let rpc = rpc_addr(&app);

    let demo = switchboard_demo::serve("127.0.0.1:0", &rpc, Some("demo-bridge-test-token"))
        .await
        .expect("starts with the right token");
    let (_page, _, _) = Page::join(&demo).await;
    demo.shutdown().await.expect("stops");

    match switchboard_demo::serve("127.0.0.1:0", &rpc, Some("wrong")).await {
        Err(DemoError::Rpc(message)) => assert!(message.contains("unauthorized"), "{message}"),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("started with a wrong token"),
    }
    app.shutdown(DEADLINE).await.expect("the server stops");

    let nowhere = "unix:/nonexistent/switchboard.sock";
    match switchboard_demo::serve("127.0.0.1:0", nowhere, None).await {
        Err(DemoError::Rpc(_)) => {}
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("started without a media server"),
    }
}
