//! A raw WebSocket peer on 127.0.0.1 for the socket tests: it answers the upgrade by hand and
//! then writes whatever frames a test wants, reading nothing unless told to, as a hostile
//! server would.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A listener on an ephemeral 127.0.0.1 port whose connections have a small receive buffer,
/// so a peer that reads nothing fills it in moments.
pub fn listener() -> (TcpListener, url::Url) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = socket.listen(8).unwrap();
    let url = url::Url::parse(&format!("ws://{}/", l.local_addr().unwrap())).unwrap();
    (l, url)
}

/// Accepts one connection and answers its upgrade with 101, and nothing more.
pub async fn accept_upgrade(l: &TcpListener) -> TcpStream {
    let (mut s, _) = l.accept().await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client left during the upgrade");
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let key = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .expect("an upgrade request carries its key");
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    s.write_all(reply.as_bytes()).await.unwrap();
    s
}

/// One unmasked server frame, final, with a payload under 126 bytes.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![0x80 | opcode, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}
