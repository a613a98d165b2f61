//! The memory mode's protocol: `put KEY VALUE`, `get KEY`, `count`,
//! `health`, `whoami`, either as separate frames (`["put", key, value]`,
//! the canonical form, any bytes) or as one text frame (`"put k v"`, for
//! quick hand-typed probes; the value is the rest of the line).
//!
//! The same protocol over two stores: the memory mode's fsynced log
//! ([`Store`]) and the sqlite mode's database
//! ([`crate::sqlite::SqliteStore`]).

use super::store::Store;

/// A durable key-value store: `put` returns `Ok` only once the write is
/// on disk, so its `ok` reply is an acknowledgement a crash cannot undo.
pub trait Backend {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), String>;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// Distinct keys.
    fn count(&self) -> Result<u64, String>;
}

impl Backend for Store {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        Store::put(self, key, value)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(Store::get(self, key).map(<[u8]>::to_vec))
    }

    fn count(&self) -> Result<u64, String> {
        Ok(Store::count(self) as u64)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Health,
    WhoAmI,
    Count,
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Invalid(String),
}

pub fn parse(frames: Vec<Vec<u8>>) -> Request {
    let mut frames = frames.into_iter();
    let Some(first) = frames.next() else {
        return Request::Invalid("empty request".into());
    };
    let rest: Vec<Vec<u8>> = frames.collect();
    if rest.is_empty() {
        if let Some(text) = split_text(&first) {
            return from_parts(text.0, text.1);
        }
    }
    from_parts(first, rest)
}

/// `"put k v w"` -> (`put`, [`k`, `v w`]); `None` for a single word.
fn split_text(frame: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let text = std::str::from_utf8(frame).ok()?;
    let (command, args) = text.split_once(' ')?;
    let args = match command {
        "put" => match args.split_once(' ') {
            Some((key, value)) => vec![key.into(), value.into()],
            None => vec![args.into()],
        },
        _ => args.split(' ').map(|a| a.as_bytes().to_vec()).collect(),
    };
    Some((command.as_bytes().to_vec(), args))
}

fn from_parts(command: Vec<u8>, args: Vec<Vec<u8>>) -> Request {
    let mut args = args.into_iter();
    match (command.as_slice(), args.len()) {
        (b"health", 0) => Request::Health,
        (b"whoami", 0) => Request::WhoAmI,
        (b"count", 0) => Request::Count,
        (b"get", 1) => Request::Get(args.next().unwrap_or_default()),
        (b"put", 2) => {
            let key = args.next().unwrap_or_default();
            Request::Put(key, args.next().unwrap_or_default())
        }
        (b"get" | b"put" | b"count" | b"health" | b"whoami", n) => Request::Invalid(format!(
            "{} takes {} argument(s), got {n}",
            String::from_utf8_lossy(&command),
            arity(&command)
        )),
        _ => Request::Invalid(format!(
            "unknown command {:?}; use put KEY VALUE, get KEY, count, health, whoami",
            String::from_utf8_lossy(&command)
        )),
    }
}

fn arity(command: &[u8]) -> usize {
    match command {
        b"put" => 2,
        b"get" => 1,
        _ => 0,
    }
}

/// Applies a request; the reply is always exactly one frame, so a REQ
/// client is never left waiting. Errors start with `error: `.
pub fn handle(store: &mut impl Backend, name: &str, request: Request) -> Vec<u8> {
    let failed = |what: &str, why: String| {
        tracing::error!(error = %why, "{what} failed");
        format!("error: {why}").into_bytes()
    };
    match request {
        Request::Health => b"ok".to_vec(),
        Request::WhoAmI => name.as_bytes().to_vec(),
        Request::Count => match store.count() {
            Ok(n) => n.to_string().into_bytes(),
            Err(why) => failed("count", why),
        },
        Request::Get(key) => match store.get(&key) {
            Ok(value) => value.unwrap_or_else(|| b"missing".to_vec()),
            Err(why) => failed("get", why),
        },
        Request::Put(key, value) => match store.put(&key, &value) {
            Ok(()) => b"ok".to_vec(),
            Err(why) => failed("put", why),
        },
        Request::Invalid(why) => format!("error: {why}").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multipart_requests() {
        assert_eq!(parse(frames(&["health"])), Request::Health);
        assert_eq!(parse(frames(&["count"])), Request::Count);
        assert_eq!(
            parse(frames(&["get", "a b"])),
            Request::Get(b"a b".to_vec())
        );
        assert_eq!(
            parse(vec![b"put".to_vec(), vec![0, 1], vec![]]),
            Request::Put(vec![0, 1], vec![])
        );
    }

    #[test]
    fn text_requests() {
        assert_eq!(parse(frames(&["get k"])), Request::Get(b"k".to_vec()));
        assert_eq!(
            parse(frames(&["put k some value"])),
            Request::Put(b"k".to_vec(), b"some value".to_vec())
        );
    }

    #[test]
    fn bad_requests_are_named() {
        let Request::Invalid(why) = parse(frames(&["put", "k"])) else {
            panic!("accepted")
        };
        assert_eq!(why, "put takes 2 argument(s), got 1");
        let Request::Invalid(why) = parse(frames(&["drop", "k"])) else {
            panic!("accepted")
        };
        assert!(why.starts_with("unknown command \"drop\""), "{why}");
        assert!(matches!(parse(Vec::new()), Request::Invalid(_)));
        assert!(matches!(parse(frames(&["put k"])), Request::Invalid(_)));
    }
}
