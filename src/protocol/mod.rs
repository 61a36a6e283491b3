//! Sans-I/O venue sessions: what to send on a new connection, what a server message means.

pub mod coinapi;
pub mod moment;

use crate::codec::{CoinApiDecoder, DecodeError, MomentDecoder};
use crate::model::Msg;
use coinapi::{CoinApiSession, Scope};
use moment::{MomentSession, MomentStream};

/// How a server message bears on the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Ordinary data: deliver it.
    Deliver,
    /// The key was refused: deliver the error, then fail the stream with an auth error.
    AuthFailed,
    /// Any other server error: deliver it; the server closes, the stream reconnects.
    ServerClosing,
    /// The server will close this connection soon (a `reconnect` notice).
    ReconnectSoon,
}

/// A live change of what a stream receives.
#[derive(Clone, Debug, PartialEq)]
pub enum ScopeChange {
    CoinApi(Scope),
    /// Moment prices: instruments by CUSIP or ISIN, or everything.
    Instruments {
        ids: Vec<String>,
        all: bool,
    },
}

/// The session of one stream, whichever venue.
#[derive(Clone, Debug)]
pub enum Session {
    CoinApi(CoinApiSession),
    Moment(MomentSession),
}

/// The frame decoder matching a session.
pub enum Decoder {
    CoinApi(CoinApiDecoder),
    Moment(MomentDecoder),
}

impl Decoder {
    /// # Errors
    /// [`DecodeError`] when the frame is not a valid message of the venue.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Msg, DecodeError> {
        match self {
            Decoder::CoinApi(d) => d.decode(frame),
            Decoder::Moment(d) => d.decode(frame),
        }
    }
}

impl Session {
    pub fn decoder(&self) -> Decoder {
        match self {
            Session::CoinApi(_) => Decoder::CoinApi(CoinApiDecoder::default()),
            Session::Moment(_) => Decoder::Moment(MomentDecoder::default()),
        }
    }

    /// The requests to send first on every new connection.
    pub fn opening(&self) -> Vec<String> {
        match self {
            Session::CoinApi(s) => vec![s.opening()],
            Session::Moment(s) => s.opening(),
        }
    }

    /// Applies a scope change; returns the requests to send now (an error text when the change
    /// does not fit the venue).
    pub fn apply(&mut self, change: &ScopeChange, add: bool) -> Result<Vec<String>, String> {
        match (self, change) {
            (Session::CoinApi(s), ScopeChange::CoinApi(scope)) => Ok(vec![if add {
                s.subscribe(scope)
            } else {
                s.unsubscribe(scope)
            }]),
            (Session::Moment(s), ScopeChange::Instruments { ids, all })
                if s.stream == MomentStream::Prices =>
            {
                Ok(if add {
                    s.subscribe(ids, *all)
                } else {
                    s.unsubscribe(ids, *all)
                })
            }
            (Session::Moment(_), ScopeChange::Instruments { .. }) => {
                Err("the order stream has no subscriptions".into())
            }
            (Session::CoinApi(_), _) => Err("CoinAPI subscriptions take data_types=, symbols=, \
                                             assets=, exchanges=, periods=, index_ids="
                .into()),
            (Session::Moment(_), _) => {
                Err("Moment price subscriptions take instruments= or all=True".into())
            }
        }
    }

    pub fn classify(&self, msg: &Msg) -> Verdict {
        match self {
            Session::CoinApi(s) => s.classify(msg),
            Session::Moment(s) => s.classify(msg),
        }
    }

    /// The URL of the next connection (the Moment order stream resumes by message number).
    pub fn connect_url(&self, base: &url::Url, last_delivered: Option<u64>) -> url::Url {
        match self {
            Session::CoinApi(_) => base.clone(),
            Session::Moment(s) => s.connect_url(base, last_delivered),
        }
    }
}
