//! The CoinAPI market-data session: the hello built from the scope, scope changes, and how
//! server messages steer the connection.

use crate::codec::write::ObjectWriter;
use crate::model::Msg;

use super::Verdict;

/// What the user subscribes to: the hello fields of the CoinAPI protocol.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    pub data_types: Vec<String>,
    pub symbols: Vec<String>,
    pub assets: Vec<String>,
    pub exchanges: Vec<String>,
    pub periods: Vec<String>,
    pub index_ids: Vec<String>,
    pub heartbeat: bool,
    pub update_limit_ms_quote: Option<u64>,
    pub update_limit_ms_book_snapshot: Option<u64>,
    pub update_limit_ms_exrate: Option<u64>,
    pub update_limit_ms_index: Option<u64>,
}

/// Union of two lists, keeping first-seen order.
fn union(a: &mut Vec<String>, b: &[String]) {
    for x in b {
        if !a.contains(x) {
            a.push(x.clone());
        }
    }
}

fn remove(a: &mut Vec<String>, b: &[String]) {
    a.retain(|x| !b.contains(x));
}

impl Scope {
    /// The request of the given `type` (`hello`, `subscribe`, `unsubscribe`) for this scope.
    pub fn request(&self, kind: &str, apikey: Option<&str>) -> String {
        let mut w = ObjectWriter::default().str("type", kind);
        if let Some(k) = apikey {
            w = w.str("apikey", k);
        }
        w = w.bool("heartbeat", self.heartbeat);
        if !self.data_types.is_empty() {
            w = w.strs("subscribe_data_type", &self.data_types);
        }
        for (name, list) in [
            ("subscribe_filter_symbol_id", &self.symbols),
            ("subscribe_filter_asset_id", &self.assets),
            ("subscribe_filter_exchange_id", &self.exchanges),
            ("subscribe_filter_period_id", &self.periods),
            ("subscribe_filter_index_id", &self.index_ids),
        ] {
            if !list.is_empty() {
                w = w.strs(name, list);
            }
        }
        for (name, v) in [
            (
                "subscribe_update_limit_ms_quote",
                self.update_limit_ms_quote,
            ),
            (
                "subscribe_update_limit_ms_book_snapshot",
                self.update_limit_ms_book_snapshot,
            ),
            (
                "subscribe_update_limit_ms_exrate",
                self.update_limit_ms_exrate,
            ),
            (
                "subscribe_update_limit_ms_index",
                self.update_limit_ms_index,
            ),
        ] {
            if let Some(v) = v {
                w = w.int(name, v);
            }
        }
        w.finish()
    }

    fn lists_mut(&mut self) -> [&mut Vec<String>; 6] {
        [
            &mut self.data_types,
            &mut self.symbols,
            &mut self.assets,
            &mut self.exchanges,
            &mut self.periods,
            &mut self.index_ids,
        ]
    }

    fn lists(&self) -> [&Vec<String>; 6] {
        [
            &self.data_types,
            &self.symbols,
            &self.assets,
            &self.exchanges,
            &self.periods,
            &self.index_ids,
        ]
    }
}

/// One CoinAPI session: the scope to (re-)send on every connection.
#[derive(Clone, Debug)]
pub struct CoinApiSession {
    scope: Scope,
}

impl CoinApiSession {
    pub fn new(scope: Scope) -> Self {
        CoinApiSession { scope }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The first message of every connection: a `hello` with the whole current scope. The key
    /// travels in the upgrade header, never in the hello.
    pub fn opening(&self) -> String {
        self.scope.request("hello", None)
    }

    /// Adds to the scope; returns the `subscribe` request to send now.
    pub fn subscribe(&mut self, add: &Scope) -> String {
        for (mine, theirs) in self.scope.lists_mut().into_iter().zip(add.lists()) {
            union(mine, theirs);
        }
        let mut req = add.clone();
        req.heartbeat = self.scope.heartbeat;
        req.request("subscribe", None)
    }

    /// Removes from the scope; returns the `unsubscribe` request to send now.
    pub fn unsubscribe(&mut self, drop: &Scope) -> String {
        for (mine, theirs) in self.scope.lists_mut().into_iter().zip(drop.lists()) {
            remove(mine, theirs);
        }
        let mut req = drop.clone();
        req.heartbeat = self.scope.heartbeat;
        req.request("unsubscribe", None)
    }

    /// What a decoded server message means for the connection.
    pub fn classify(&self, msg: &Msg) -> Verdict {
        match msg {
            // Only the documented key error: a rate limit that mentions "API key" is not one.
            Msg::Error(e) => {
                if e.message.trim().eq_ignore_ascii_case("invalid api key") {
                    Verdict::AuthFailed
                } else {
                    Verdict::ServerClosing
                }
            }
            Msg::Reconnect(_) => Verdict::ReconnectSoon,
            _ => Verdict::Deliver,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServerError;

    fn scope() -> Scope {
        Scope {
            data_types: vec!["trade".into(), "quote".into()],
            symbols: vec!["BITSTAMP_SPOT_BTC_USD$".into(), "COINBASE_".into()],
            assets: vec!["BTC".into()],
            exchanges: vec!["BITSTAMP".into()],
            periods: vec!["1MIN".into()],
            index_ids: vec!["IDX_REFRATE_PRIMKT_BTC_USD".into()],
            heartbeat: true,
            update_limit_ms_quote: Some(100),
            update_limit_ms_book_snapshot: Some(1000),
            update_limit_ms_exrate: Some(1000),
            update_limit_ms_index: Some(500),
        }
    }

    #[test]
    fn hello_carries_every_field() {
        let s = CoinApiSession::new(scope()).opening();
        let mut b = s.clone().into_bytes();
        let v = simd_json::to_owned_value(&mut b).unwrap();
        use simd_json::prelude::*;
        assert_eq!(v["type"], "hello");
        assert_eq!(v["heartbeat"], true);
        assert_eq!(v["subscribe_data_type"][1], "quote");
        assert_eq!(v["subscribe_filter_symbol_id"][0], "BITSTAMP_SPOT_BTC_USD$");
        assert_eq!(v["subscribe_filter_asset_id"][0], "BTC");
        assert_eq!(v["subscribe_filter_exchange_id"][0], "BITSTAMP");
        assert_eq!(v["subscribe_filter_period_id"][0], "1MIN");
        assert_eq!(
            v["subscribe_filter_index_id"][0],
            "IDX_REFRATE_PRIMKT_BTC_USD"
        );
        assert_eq!(v["subscribe_update_limit_ms_quote"], 100);
        assert_eq!(v["subscribe_update_limit_ms_book_snapshot"], 1000);
        assert_eq!(v["subscribe_update_limit_ms_exrate"], 1000);
        assert_eq!(v["subscribe_update_limit_ms_index"], 500);
        assert!(v.get("apikey").is_none(), "the key travels in the header");
    }

    #[test]
    fn scope_changes_are_remembered_for_reconnects() {
        let mut s = CoinApiSession::new(Scope {
            data_types: vec!["trade".into()],
            ..Scope::default()
        });
        let req = s.subscribe(&Scope {
            data_types: vec!["quote".into()],
            ..Scope::default()
        });
        assert!(req.starts_with(r#"{"type":"subscribe""#));
        assert_eq!(s.scope().data_types, vec!["trade", "quote"]);
        s.unsubscribe(&Scope {
            data_types: vec!["trade".into()],
            ..Scope::default()
        });
        assert_eq!(s.scope().data_types, vec!["quote"]);
        assert!(s.opening().contains(r#""subscribe_data_type":["quote"]"#));
    }

    #[test]
    fn errors_naming_the_key_are_auth_failures() {
        let s = CoinApiSession::new(Scope::default());
        let err = |m: &str| {
            Msg::Error(ServerError {
                message: m.into(),
                error_type: None,
            })
        };
        assert_eq!(s.classify(&err("Invalid API key")), Verdict::AuthFailed);
        assert_eq!(s.classify(&err(" invalid api KEY\n")), Verdict::AuthFailed);
        assert_eq!(
            s.classify(&err("Too many requests for this API key")),
            Verdict::ServerClosing
        );
        assert_eq!(
            s.classify(&err(
                "Reached maximum allowed buffered messages for this connection."
            )),
            Verdict::ServerClosing
        );
        assert_eq!(s.classify(&Msg::Heartbeat), Verdict::Deliver);
    }
}
