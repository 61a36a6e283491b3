//! The Moment real-time session (Prices and Orders): the requests of a new connection, the
//! resume point of the order stream, and how control messages steer the connection.

use crate::codec::write::ObjectWriter;
use crate::model::Msg;

use super::Verdict;

/// Which Moment stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MomentStream {
    Prices,
    Orders,
}

/// One Moment session.
#[derive(Clone, Debug)]
pub struct MomentSession {
    pub stream: MomentStream,
    instruments: Vec<String>,
    all: bool,
    start_msg_number: Option<u64>,
}

fn request(kind: &str, instrument: Option<&str>) -> String {
    let mut w = ObjectWriter::default().str("msg_type", kind);
    if let Some(id) = instrument {
        w = w.str("instrument_id", id);
    }
    w.finish()
}

/// The query parameter that asks the order stream to start (again) at a message number. The
/// documented name was not found; client and simulator share this interpretation.
pub const START_PARAM: &str = "start_msg_number";

impl MomentSession {
    pub fn new(
        stream: MomentStream,
        instruments: Vec<String>,
        all: bool,
        start_msg_number: Option<u64>,
    ) -> Self {
        MomentSession {
            stream,
            instruments,
            all,
            start_msg_number,
        }
    }

    /// The requests of every new connection: the price subscriptions (orders need none).
    pub fn opening(&self) -> Vec<String> {
        match self.stream {
            MomentStream::Orders => Vec::new(),
            MomentStream::Prices if self.all => vec![request("subscribe_all", None)],
            MomentStream::Prices => self
                .instruments
                .iter()
                .map(|id| request("subscribe", Some(id)))
                .collect(),
        }
    }

    /// The URL of the next connection: the order stream resumes at the last delivered number
    /// (sent again and dropped as a duplicate, which proves continuity), else at the user's start.
    pub fn connect_url(&self, base: &url::Url, last_delivered: Option<u64>) -> url::Url {
        let start = last_delivered.or(self.start_msg_number);
        match (self.stream, start) {
            (MomentStream::Orders, Some(n)) => {
                let mut u = base.clone();
                let kept: Vec<(String, String)> = base
                    .query_pairs()
                    .filter(|(k, _)| k != START_PARAM)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                u.query_pairs_mut()
                    .clear()
                    .extend_pairs(kept)
                    .append_pair(START_PARAM, &format!("{n:018}"));
                u
            }
            _ => base.clone(),
        }
    }

    /// Adds instruments (or everything); returns the requests to send now.
    pub fn subscribe(&mut self, ids: &[String], all: bool) -> Vec<String> {
        if all {
            self.all = true;
            return vec![request("subscribe_all", None)];
        }
        let mut out = Vec::new();
        for id in ids {
            if !self.instruments.contains(id) {
                self.instruments.push(id.clone());
            }
            out.push(request("subscribe", Some(id)));
        }
        out
    }

    /// Removes instruments (or everything); returns the requests to send now.
    pub fn unsubscribe(&mut self, ids: &[String], all: bool) -> Vec<String> {
        if all {
            self.all = false;
            self.instruments.clear();
            return vec![request("unsubscribe_all", None)];
        }
        self.instruments.retain(|x| !ids.contains(x));
        ids.iter()
            .map(|id| request("unsubscribe", Some(id)))
            .collect()
    }

    /// Errors are delivered and leave the connection open: Moment refuses a key with HTTP
    /// 401/403 on the upgrade (the transport's `Auth`), never with a message.
    pub fn classify(&self, _msg: &Msg) -> Verdict {
        Verdict::Deliver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_resubscribe_on_every_connection() {
        let mut s = MomentSession::new(MomentStream::Prices, vec!["037833DP2".into()], false, None);
        assert_eq!(
            s.opening(),
            vec![r#"{"msg_type":"subscribe","instrument_id":"037833DP2"}"#]
        );
        s.subscribe(&["US037833DP29".into()], false);
        assert_eq!(s.opening().len(), 2);
        s.unsubscribe(&["037833DP2".into()], false);
        assert_eq!(
            s.opening(),
            vec![r#"{"msg_type":"subscribe","instrument_id":"US037833DP29"}"#]
        );
        s.subscribe(&[], true);
        assert_eq!(s.opening(), vec![r#"{"msg_type":"subscribe_all"}"#]);
        assert_eq!(
            s.unsubscribe(&[], true),
            vec![r#"{"msg_type":"unsubscribe_all"}"#]
        );
        assert!(s.opening().is_empty());
    }

    #[test]
    fn orders_resume_from_the_last_delivered_number() {
        let base = url::Url::parse("ws://127.0.0.1:9/v1/trading/order-stream/?x=1").unwrap();
        let s = MomentSession::new(
            MomentStream::Orders,
            vec![],
            false,
            Some(202_405_010_000_000_000),
        );
        assert!(s.opening().is_empty());
        assert_eq!(
            s.connect_url(&base, None).as_str(),
            "ws://127.0.0.1:9/v1/trading/order-stream/?x=1&start_msg_number=202405010000000000"
        );
        assert!(s
            .connect_url(&base, Some(202_405_010_000_000_042))
            .as_str()
            .ends_with("start_msg_number=202405010000000042"));
        let fresh = MomentSession::new(MomentStream::Orders, vec![], false, None);
        assert_eq!(fresh.connect_url(&base, None), base);
    }

    #[test]
    fn bad_requests_do_not_end_the_stream() {
        let s = MomentSession::new(MomentStream::Prices, vec![], false, None);
        let err = |m: &str, t: &str| {
            Msg::Error(crate::model::ServerError {
                message: m.into(),
                error_type: Some(t.into()),
            })
        };
        assert_eq!(
            s.classify(&err("unknown instrument X", "invalid_request")),
            Verdict::Deliver
        );
        // The key is refused on the upgrade (401/403); a message never ends the stream.
        assert_eq!(
            s.classify(&err("invalid api key", "unauthorized")),
            Verdict::Deliver
        );
    }
}
