//! The client's socket code: one WebSocket connection (yawc over tokio, rustls TLS) behind a
//! narrow surface of frames in and text out, so the rest of the core never sees the crate.

use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt, SinkExt};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use yawc::close::CloseCode;
use yawc::{
    Frame as WsFrame, HttpRequestBuilder, MaybeTlsStream, OpCode, Options, WebSocket,
    WebSocketError,
};

pub mod fds;
mod strict;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
pub mod watch;

use strict::Strict;

/// The WebSocket over the checked byte stream (TLS or not).
type Ws = WebSocket<Strict<MaybeTlsStream<TcpStream>>>;

/// A frame as the core sees it.
#[derive(Debug)]
pub enum Frame {
    /// A data frame's payload (text or binary; both are handed to the decoder).
    Data {
        payload: bytes::Bytes,
        binary: bool,
    },
    /// A ping from the server; the pong is queued by the transport and flushed by the caller.
    Ping,
    Pong,
    /// The server's close frame.
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// Everything needed to open one connection.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub url: url::Url,
    /// Extra upgrade headers (auth); never logged.
    pub headers: Vec<(String, String)>,
    pub compression: bool,
    pub max_message_size: usize,
    pub connect_timeout: Duration,
    /// The longest any send, ping or flush may take: a peer that stops reading fails the
    /// connection instead of wedging it.
    pub write_timeout: Duration,
    /// The longest a close may take before the socket is dropped anyway.
    pub close_timeout: Duration,
    pub ca_file: Option<PathBuf>,
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The server refused the upgrade with 401 or 403: the key is wrong.
    Auth(u16),
    /// Another HTTP status on the upgrade (429 and 5xx are worth retrying), with the
    /// response's `Retry-After` value as sent, if any.
    Status(u16, Option<String>),
    /// TCP, TLS or handshake failure.
    Io(String),
    /// Nothing answered within the connect timeout.
    Timeout,
    /// The `ca_file` could not be read or held no certificate.
    Config(String),
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectFailure::Auth(code) => write!(f, "the server refused the key (HTTP {code})"),
            ConnectFailure::Status(code, _) => {
                write!(f, "the upgrade was answered with HTTP {code}")
            }
            ConnectFailure::Io(e) => write!(f, "{e}"),
            ConnectFailure::Timeout => f.write_str("connect timed out"),
            ConnectFailure::Config(e) => write!(f, "{e}"),
        }
    }
}

/// A read or write failure on an open connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    pub reason: String,
    /// The close code tickwire sent because of it (e.g. 1009 for an oversize frame).
    pub code: Option<u16>,
}

fn tls_connector(ca_file: Option<&PathBuf>) -> Result<tokio_rustls::TlsConnector, ConnectFailure> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| ConnectFailure::Config(format!("ca_file {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    ConnectFailure::Config(format!("ca_file {}: {e}", path.display()))
                })?;
                roots
                    .add(cert)
                    .map_err(|e| ConnectFailure::Config(format!("ca_file: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ConnectFailure::Config(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectFailure::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Opens the TCP connection (and TLS for `wss`), keeping the socket's descriptor: the
/// connection is dialled here rather than by yawc's builder only to know it.
async fn dial(
    url: &url::Url,
    connector: Option<tokio_rustls::TlsConnector>,
) -> Result<(MaybeTlsStream<TcpStream>, fds::Registered), WebSocketError> {
    let host = url.host_str().ok_or(WebSocketError::InvalidHttpScheme)?;
    let port = url
        .port_or_known_default()
        .ok_or(WebSocketError::InvalidHttpScheme)?;
    // An IPv6 literal comes bracketed in the URL; the resolver wants it bare.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((bare, port)).await?;
    tcp.set_nodelay(true)?;
    let fd = fds::Registered::new(tcp.as_raw_fd());
    let Some(connector) = connector else {
        return Ok((MaybeTlsStream::Plain(tcp), fd));
    };
    let name = ServerName::try_from(bare.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    Ok((MaybeTlsStream::Tls(connector.connect(name, tcp).await?), fd))
}

/// One open WebSocket connection.
pub struct Connection {
    ws: Ws,
    /// The TCP socket under the WebSocket (and TLS), for a consumer loop to watch.
    fd: RawFd,
    /// The socket's entry in the registry a forked child closes.
    _registered: fds::Registered,
    /// What the checked byte stream saw (the upgrade's extensions, a broken RFC 6455 rule).
    seen: Arc<strict::Seen>,
    write_timeout: Duration,
    close_timeout: Duration,
}

fn write_failed(e: &WebSocketError) -> TransportError {
    TransportError {
        reason: e.to_string(),
        code: None,
    }
}

/// Bounds one write by `limit`.
async fn bounded<F>(limit: Duration, write: F) -> Result<(), TransportError>
where
    F: std::future::Future<Output = Result<(), WebSocketError>>,
{
    match tokio::time::timeout(limit, write).await {
        Ok(r) => r.map_err(|e| write_failed(&e)),
        Err(_) => Err(TransportError {
            reason: format!(
                "the server read nothing for {:.1} s (write_timeout)",
                limit.as_secs_f64()
            ),
            code: None,
        }),
    }
}

impl Connection {
    /// Opens the connection and completes the upgrade within `connect_timeout`.
    ///
    /// # Errors
    /// [`ConnectFailure`] saying whether the key was refused, the server answered another
    /// status, or the network failed.
    pub async fn connect(opts: &ConnectOptions) -> Result<Connection, ConnectFailure> {
        // No `with_no_delay()`: that option is read only by yawc's own dialling; `dial` sets
        // TCP_NODELAY itself.
        // yawc refuses a message of its limit or more; tickwire's limit is inclusive (a message
        // of exactly `max_message_size` bytes, counted after inflate, is accepted).
        let limit = opts.max_message_size.saturating_add(1);
        let mut options = Options::default()
            .with_max_payload_read(limit)
            .with_max_read_buffer(limit);
        if opts.compression {
            options = options.with_low_latency_compression();
        }
        let mut request = HttpRequestBuilder::new();
        for (k, v) in &opts.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let connector = match opts.url.scheme() {
            "wss" => Some(tls_connector(opts.ca_file.as_ref())?),
            _ => None,
        };
        // Filled in by the reader as the response arrives, so a refusal's head can be read.
        let head_seen = std::sync::Mutex::new(None);
        let open = async {
            let (stream, registered) = dial(&opts.url, connector).await?;
            let stream = Strict::new(stream);
            let seen = stream.seen();
            *head_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(seen.clone());
            Ws::handshake_with_request(opts.url.clone(), stream, options, request)
                .await
                .map(|ws| Connection {
                    fd: registered.fd(),
                    ws,
                    _registered: registered,
                    seen,
                    write_timeout: opts.write_timeout,
                    close_timeout: opts.close_timeout,
                })
        };
        match tokio::time::timeout(opts.connect_timeout, open).await {
            Err(_) => Err(ConnectFailure::Timeout),
            Ok(Ok(mut conn)) => match conn.unoffered_extension(opts.compression) {
                None => Ok(conn),
                Some(name) => {
                    // RFC 6455 4.1: the client fails the connection (1002).
                    let why = format!("the server agreed to extension {name:?}, never offered");
                    let close = WsFrame::close(CloseCode::Protocol, &why);
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn.ws.send(close)).await;
                    Err(ConnectFailure::Io(why))
                }
            },
            Ok(Err(WebSocketError::InvalidStatusCode(code))) if code == 401 || code == 403 => {
                Err(ConnectFailure::Auth(code))
            }
            Ok(Err(WebSocketError::InvalidStatusCode(code))) => {
                let seen = head_seen
                    .into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let retry_after = seen.and_then(|s| s.retry_after.get().cloned());
                Err(ConnectFailure::Status(code, retry_after))
            }
            Ok(Err(e)) => Err(ConnectFailure::Io(e.to_string())),
        }
    }

    /// The first extension the upgrade response agreed to that tickwire did not offer.
    fn unoffered_extension(&self, compression: bool) -> Option<String> {
        self.seen
            .extensions
            .get()?
            .iter()
            .find(|name| !(compression && *name == "permessage-deflate"))
            .cloned()
    }

    /// Fails the connection with `code` (a close frame written if the socket takes it now)
    /// and says why.
    fn fail(&mut self, code: CloseCode, reason: String) -> TransportError {
        let _ = self
            .ws
            .send(WsFrame::close(code, reason.as_bytes()))
            .now_or_never();
        TransportError {
            code: Some(code.into()),
            reason,
        }
    }

    fn convert(&mut self, item: Result<WsFrame, WebSocketError>) -> Result<Frame, TransportError> {
        match item {
            Err(WebSocketError::ConnectionClosed) => Err(TransportError {
                reason: "connection closed".into(),
                code: None,
            }),
            Err(e) => {
                // yawc queued its close frame (for a frame it refused); write it out now, as
                // nothing reads or writes this connection again.
                let _ = futures::future::poll_fn(|cx| self.ws.poll_ready_unpin(cx)).now_or_never();
                let _ = self.ws.flush().now_or_never();
                Err(TransportError {
                    code: match e {
                        WebSocketError::FrameTooLarge => Some(1009),
                        WebSocketError::InvalidUTF8 => Some(1007),
                        WebSocketError::ReservedBitsNotZero
                        | WebSocketError::ControlFrameFragmented
                        | WebSocketError::PingFrameTooLarge
                        | WebSocketError::InvalidFragment
                        | WebSocketError::InvalidCloseFrame
                        | WebSocketError::InvalidCloseCode
                        | WebSocketError::InvalidContinuationFrame
                        | WebSocketError::CompressionNotSupported => Some(1002),
                        _ => None,
                    },
                    reason: match self.seen.violation.get() {
                        Some(rule) => (*rule).to_string(),
                        None => e.to_string(),
                    },
                })
            }
            // yawc checks text for UTF-8 only after reassembly, as tickwire does here, but
            // without a close frame: 1007 is sent here.
            Ok(f) if f.opcode() == OpCode::Text && std::str::from_utf8(f.payload()).is_err() => {
                Err(self.fail(CloseCode::Invalid, "invalid UTF-8 in a text frame".into()))
            }
            Ok(f) => Ok(match f.opcode() {
                OpCode::Text => Frame::Data {
                    payload: f.into_payload(),
                    binary: false,
                },
                OpCode::Binary => Frame::Data {
                    payload: f.into_payload(),
                    binary: true,
                },
                OpCode::Ping => Frame::Ping,
                OpCode::Pong => Frame::Pong,
                OpCode::Close => Frame::Close {
                    code: f.close_code().map(u16::from),
                    reason: f
                        .close_reason()
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                        .to_string(),
                },
                // yawc reassembles fragments, so a continuation handed out on its own is a
                // frame no message started: the server broke the protocol.
                OpCode::Continuation => {
                    return Err(TransportError {
                        reason: "a continuation frame without a message to continue".into(),
                        code: Some(1002),
                    })
                }
            }),
        }
    }

    /// The TCP socket's descriptor (valid while the connection lives).
    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }

    /// The next frame, waiting for it.
    ///
    /// # Errors
    /// [`TransportError`] when the connection broke (no close frame, protocol violation,
    /// oversize frame).
    pub async fn next(&mut self) -> Result<Frame, TransportError> {
        let item = self.ws.next_frame().await;
        self.convert(item)
    }

    /// The next frame if one is already buffered or readable without waiting.
    pub fn try_next(&mut self) -> Option<Result<Frame, TransportError>> {
        let item = self.ws.next_frame().now_or_never()?;
        Some(self.convert(item))
    }

    /// Polls for the next frame.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Frame, TransportError>> {
        let item = std::task::ready!(self.ws.poll_next_frame(cx));
        Poll::Ready(self.convert(item))
    }

    /// Sends one text frame and flushes it, within `write_timeout`.
    ///
    /// # Errors
    /// [`TransportError`] when the socket is gone or the peer stopped reading.
    pub async fn send_text(&mut self, text: String) -> Result<(), TransportError> {
        bounded(self.write_timeout, self.ws.send(WsFrame::text(text))).await
    }

    /// Sends a ping (our own liveness probe), within `write_timeout`.
    ///
    /// # Errors
    /// [`TransportError`] when the socket is gone or the peer stopped reading.
    pub async fn ping(&mut self) -> Result<(), TransportError> {
        bounded(
            self.write_timeout,
            self.ws.send(WsFrame::ping(bytes::Bytes::new())),
        )
        .await
    }

    /// Writes out whatever the connection owes the server (pongs queued by reads, close
    /// replies), so a pong never waits for our next data write; within `write_timeout`.
    ///
    /// # Errors
    /// [`TransportError`] when the socket is gone or the peer stopped reading.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        bounded(self.write_timeout, self.ws.flush()).await
    }

    /// Closes politely (close frame, then flush) within `close_timeout`, then drops the
    /// socket whatever the peer does; errors are irrelevant at this point.
    pub async fn close(mut self) {
        self.shutdown().await;
    }

    /// As [`Connection::close`], keeping the (now closed) connection for its owner to drop.
    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(self.close_timeout, self.ws.close()).await;
    }
}
