//! The invalidation bus's messages and the per-node sequence check.
//!
//! A message is text: `ps1|{node}|{seq}|{kind}|{cache}|{sent}|{generation}|{name}`, with the node id in hex,
//! `sent` the sender's Unix time in microseconds (for the lag statistic), and `kind` one of `t` (tag), `p` (key
//! prefix), `k` (key), `c` (clear) or `h` (heartbeat). The name comes last so it may contain `|`. Redis
//! appends the generation and the name inside the invalidation's script (see `redis.rs`), so the message and
//! the version it announces leave the server together.

use std::collections::HashMap;

/// What a message announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageKind {
    Tag,
    Prefix,
    Key,
    Clear,
    Heartbeat,
}

impl MessageKind {
    pub(crate) fn letter(self) -> char {
        match self {
            MessageKind::Tag => 't',
            MessageKind::Prefix => 'p',
            MessageKind::Key => 'k',
            MessageKind::Clear => 'c',
            MessageKind::Heartbeat => 'h',
        }
    }

    fn from_letter(letter: &str) -> Option<Self> {
        Some(match letter {
            "t" => MessageKind::Tag,
            "p" => MessageKind::Prefix,
            "k" => MessageKind::Key,
            "c" => MessageKind::Clear,
            "h" => MessageKind::Heartbeat,
            _ => return None,
        })
    }
}

/// A parsed message, borrowing its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub(crate) node: u64,
    pub(crate) seq: u64,
    pub(crate) kind: MessageKind,
    pub(crate) cache: &'a str,
    pub(crate) sent_micros: u64,
    pub(crate) generation: u64,
    pub(crate) name: &'a str,
}

/// The part of a message before the generation (the generation and name follow, `|`-separated).
pub(crate) fn head(
    node: u64,
    seq: u64,
    kind: MessageKind,
    cache: &str,
    sent_micros: u64,
) -> String {
    format!(
        "ps1|{node:x}|{seq}|{}|{cache}|{sent_micros}|",
        kind.letter()
    )
}

/// Parses a message; `None` for anything else (another program's messages on the channel are ignored).
pub(crate) fn parse(bytes: &[u8]) -> Option<Message<'_>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(8, '|');
    if parts.next()? != "ps1" {
        return None;
    }
    let node = u64::from_str_radix(parts.next()?, 16).ok()?;
    let seq = parts.next()?.parse().ok()?;
    let kind = MessageKind::from_letter(parts.next()?)?;
    let cache = parts.next()?;
    let sent_micros = parts.next()?.parse().ok()?;
    let generation = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    Some(Message {
        node,
        seq,
        kind,
        cache,
        sent_micros,
        generation,
        name,
    })
}

/// Most nodes remembered; past it the table is emptied (the next message of each node is then taken as its
/// first, which can only miss a gap, and gaps also come with disconnections, which are seen).
const MAX_NODES: usize = 4096;

/// The last sequence number seen from each node.
#[derive(Debug, Default)]
pub(crate) struct NodeSeqs {
    last: HashMap<u64, u64>,
}

impl NodeSeqs {
    /// Records `seq` from `node`; returns whether messages of that node were missed in between.
    pub(crate) fn gap(&mut self, node: u64, seq: u64) -> bool {
        if self.last.len() >= MAX_NODES && !self.last.contains_key(&node) {
            self.last.clear();
        }
        match self.last.insert(node, seq) {
            Some(previous) => seq > previous + 1,
            None => false,
        }
    }

    /// Forgets every node (after a resubscription: messages in between were lost anyway).
    pub(crate) fn reset(&mut self) {
        self.last.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_junk_is_ignored() {
        let text = format!(
            "{}42|product|1",
            head(0xabc, 7, MessageKind::Tag, "products", 99)
        );
        let message = parse(text.as_bytes()).unwrap();
        assert_eq!(
            message,
            Message {
                node: 0xabc,
                seq: 7,
                kind: MessageKind::Tag,
                cache: "products",
                sent_micros: 99,
                generation: 42,
                name: "product|1",
            }
        );
        for junk in [
            &b""[..],
            b"ps1",
            b"ps2|1|1|t|c|1|1|n",
            b"ps1|zz|1|t|c|1|1|n",
            b"ps1|1|1|x|c|1|1|n",
            b"\xff",
        ] {
            assert!(parse(junk).is_none());
        }
        let heartbeat = format!("{}0|", head(1, 1, MessageKind::Heartbeat, "", 5));
        assert_eq!(
            parse(heartbeat.as_bytes()).unwrap().kind,
            MessageKind::Heartbeat
        );
    }

    #[test]
    fn gaps_are_seen_per_node() {
        let mut seqs = NodeSeqs::default();
        assert!(!seqs.gap(1, 5));
        assert!(!seqs.gap(1, 6));
        assert!(!seqs.gap(2, 1));
        assert!(seqs.gap(1, 8));
        assert!(!seqs.gap(1, 8), "a repeat is no gap");
        seqs.reset();
        assert!(!seqs.gap(1, 20));
    }
}
