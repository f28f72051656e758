//! MessagePack-RPC on the wire: finding frame boundaries in a byte stream, telling requests
//! from other values, converting parameters to the JSON data model the handlers read, and
//! encoding responses and notifications.
//!
//! Everything here is synchronous and free of I/O, so the property tests drive it directly.
//! The server's connection code and the client ([`crate::Client`]) share it.

use rmpv::Value as Msgpack;
use serde_json::{Map, Value};
use switchboard_core::ErrorCode;

use crate::protocol::RpcError;

/// Message type of a request: `[0, msgid, method, params]`.
pub const REQUEST: u64 = 0;
/// Message type of a response: `[1, msgid, error, result]`.
pub const RESPONSE: u64 = 1;
/// Message type of a notification: `[2, method, params]`.
pub const NOTIFICATION: u64 = 2;

/// Deepest nesting of arrays and maps accepted in one message: the request's own array is
/// level 1, so a request may hold parameters nested 63 levels deep. Real parameters nest
/// fewer than ten levels; the bound keeps decoding (which recurses) far from the stack's end.
pub const MAX_DEPTH: usize = 64;

/// The depth budget handed to `rmpv`, which spends two units per array or map (the value,
/// then its elements) and up to three on a leaf (value, string, bytes). [`FrameScanner`]
/// enforces [`MAX_DEPTH`] exactly before `rmpv` sees a frame; this is only a backstop.
const RMPV_DEPTH: usize = 2 * MAX_DEPTH + 4;

/// What [`FrameScanner::scan`] found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// The first value is complete and this many bytes long.
    Complete(usize),
    /// More bytes are needed.
    Incomplete,
    /// The first value is, or would become, longer than the frame limit.
    TooLarge,
    /// The bytes are not MessagePack (a reserved marker byte where a value must start).
    Invalid,
}

/// Finds where the first MessagePack value in a growing buffer ends, without decoding or
/// allocating.
///
/// The stream has no length prefix, so the only way to know whether a value is complete is
/// to walk its structure. The walk is iterative (a count of values still owed, not a stack)
/// and resumes where it stopped when more bytes arrive, so a large frame trickling in is
/// scanned once, not once per read. Declared lengths are checked against the limit as soon
/// as their header is read, so a 4 GiB string header is refused after five bytes instead of
/// after buffering.
///
/// On the way it measures the frame: how many values it holds ([`FrameScanner::values`])
/// and how deeply its arrays and maps nest ([`FrameScanner::depth`]), so that a frame can be
/// refused before decoding allocates anything for it.
#[derive(Clone, Debug)]
pub struct FrameScanner {
    max: usize,
    /// Offset of the next value header to read.
    pos: usize,
    /// Values still owed before the frame is complete.
    pending: u64,
    /// Values read so far in this frame.
    values: u64,
    /// Values still owed by each open array or map, outermost first, below a root level
    /// owing the frame's one value. Never longer than `MAX_DEPTH + 1`: past that the frame
    /// is known to be too deep and only `pending` is kept.
    levels: Vec<u64>,
    /// Deepest nesting of arrays and maps seen, `MAX_DEPTH + 1` meaning "more than allowed".
    depth: usize,
}

impl FrameScanner {
    /// A scanner for frames of at most `max_frame_bytes` bytes.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            max: max_frame_bytes.max(1),
            pos: 0,
            pending: 1,
            values: 0,
            levels: vec![1],
            depth: 0,
        }
    }

    /// Forgets the progress made, for the next frame. Call it after taking a complete frame
    /// off the front of the buffer.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.pending = 1;
        self.values = 0;
        self.levels.clear();
        self.levels.push(1);
        self.depth = 0;
    }

    /// The frame limit this scanner applies.
    pub fn max_frame_bytes(&self) -> usize {
        self.max
    }

    /// Values (scalars, arrays, maps, and map keys) read so far in this frame.
    pub fn values(&self) -> u64 {
        self.values
    }

    /// The deepest nesting of arrays and maps read so far in this frame (a lone scalar is
    /// 0, `[1]` is 1, `[[1]]` is 2), saturating at `MAX_DEPTH + 1`.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Records one value header in the nesting measurement.
    fn measure(&mut self, children: u64, is_container: bool) {
        self.values += 1;
        if self.depth > MAX_DEPTH {
            return;
        }
        // The value is nested in every level still open except the root.
        let nesting = self.levels.len().saturating_sub(1);
        if let Some(owed) = self.levels.last_mut() {
            *owed = owed.saturating_sub(1);
        }
        if is_container {
            self.depth = self.depth.max(nesting + 1);
            if self.depth > MAX_DEPTH {
                // Too deep already; the rest of the structure only matters for finding
                // the frame's end, which `pending` does.
                self.levels.clear();
                return;
            }
        }
        if children > 0 {
            self.levels.push(children);
        } else {
            while self.levels.last() == Some(&0) {
                self.levels.pop();
            }
        }
    }

    /// Scans `buf`, which must start at a frame boundary and, between calls without a
    /// [`FrameScanner::reset`], only grow at its end.
    pub fn scan(&mut self, buf: &[u8]) -> Scan {
        while self.pending > 0 {
            let item = match item_at(&buf[self.pos.min(buf.len())..]) {
                Header::Item(item) => item,
                Header::Incomplete => return self.incomplete(buf),
                Header::Invalid => return Scan::Invalid,
            };
            let Some(end) = self
                .pos
                .checked_add(item.header)
                .and_then(|e| e.checked_add(item.body))
            else {
                return Scan::TooLarge;
            };
            if end > self.max {
                return Scan::TooLarge;
            }
            // Every value still owed takes at least one byte, so owing more values than bytes
            // remain under the limit already proves the frame too large.
            let owed = self.pending - 1 + item.children;
            if owed > (self.max - end) as u64 {
                return Scan::TooLarge;
            }
            if end > buf.len() {
                return self.incomplete(buf);
            }
            self.pos = end;
            self.pending = owed;
            self.measure(item.children, item.container);
        }
        Scan::Complete(self.pos)
    }

    fn incomplete(&self, buf: &[u8]) -> Scan {
        if buf.len() >= self.max {
            Scan::TooLarge
        } else {
            Scan::Incomplete
        }
    }
}

/// One value header: its own size, the size of its inline body (string, binary or extension
/// bytes), and how many values it contains (array elements, or keys plus values of a map).
struct Item {
    header: usize,
    body: usize,
    children: u64,
    container: bool,
}

enum Header {
    Item(Item),
    Incomplete,
    Invalid,
}

fn item_at(bytes: &[u8]) -> Header {
    let Some(&marker) = bytes.first() else {
        return Header::Incomplete;
    };
    let fixed = |header: usize| {
        Header::Item(Item {
            header,
            body: 0,
            children: 0,
            container: false,
        })
    };
    // Reads a big-endian length of `width` bytes after the marker (and `skip` more bytes).
    let length = |width: usize| -> Option<u64> {
        let raw = bytes.get(1..1 + width)?;
        Some(raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    let sized = |width: usize, extra: usize| match length(width) {
        None => Header::Incomplete,
        Some(len) => Header::Item(Item {
            header: 1 + width + extra,
            body: usize::try_from(len).unwrap_or(usize::MAX),
            children: 0,
            container: false,
        }),
    };
    let container = |width: usize, per_entry: u64| match length(width) {
        None => Header::Incomplete,
        Some(n) => Header::Item(Item {
            header: 1 + width,
            body: 0,
            children: n * per_entry,
            container: true,
        }),
    };
    match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => fixed(1),
        0x80..=0x8f => Header::Item(Item {
            header: 1,
            body: 0,
            children: u64::from(marker & 0x0f) * 2,
            container: true,
        }),
        0x90..=0x9f => Header::Item(Item {
            header: 1,
            body: 0,
            children: u64::from(marker & 0x0f),
            container: true,
        }),
        0xa0..=0xbf => Header::Item(Item {
            header: 1,
            body: usize::from(marker & 0x1f),
            children: 0,
            container: false,
        }),
        0xc1 => Header::Invalid,
        0xc4 | 0xd9 => sized(1, 0),
        0xc5 | 0xda => sized(2, 0),
        0xc6 | 0xdb => sized(4, 0),
        // ext 8/16/32: the length, then a one-byte type, then the data.
        0xc7 => sized(1, 1),
        0xc8 => sized(2, 1),
        0xc9 => sized(4, 1),
        0xca => fixed(5),
        0xcb => fixed(9),
        0xcc | 0xd0 => fixed(2),
        0xcd | 0xd1 => fixed(3),
        0xce | 0xd2 => fixed(5),
        0xcf | 0xd3 => fixed(9),
        // fixext 1/2/4/8/16: marker, type byte, data.
        0xd4 => fixed(3),
        0xd5 => fixed(4),
        0xd6 => fixed(6),
        0xd7 => fixed(10),
        0xd8 => fixed(18),
        0xdc => container(2, 1),
        0xdd => container(4, 1),
        0xde => container(2, 2),
        0xdf => container(4, 2),
    }
}

/// Decodes one complete frame (as delimited by [`FrameScanner`]), of any number of values.
///
/// Fails for values nested deeper than [`MAX_DEPTH`] and for bytes that are not one whole
/// value.
pub fn decode_frame(frame: &[u8]) -> Result<Msgpack, String> {
    decode_frame_with(frame, usize::MAX)
}

/// Decodes one complete frame holding at most `max_values` values, nested at most
/// [`MAX_DEPTH`] deep.
///
/// The frame is measured first, without allocating, so a frame over either bound costs a
/// scan and nothing more: decoding allocates about 40 bytes per value (see
/// `docs/security.md`), which for a megabyte of one-byte nils would be tens of megabytes.
pub fn decode_frame_with(frame: &[u8], max_values: usize) -> Result<Msgpack, String> {
    let mut measure = FrameScanner::new(frame.len().max(1));
    match measure.scan(frame) {
        Scan::Complete(n) if n == frame.len() => {}
        Scan::Complete(_) => return Err("trailing bytes after the value".to_owned()),
        Scan::Incomplete | Scan::TooLarge => return Err("an incomplete value".to_owned()),
        Scan::Invalid => return Err("not MessagePack".to_owned()),
    }
    if measure.depth() > MAX_DEPTH {
        return Err(format!(
            "arrays and maps nested deeper than {MAX_DEPTH} levels"
        ));
    }
    if measure.values() > max_values as u64 {
        return Err(format!(
            "more than {max_values} values in one message (rpc.max_message_values)"
        ));
    }
    let mut reader = frame;
    match rmpv::decode::read_value_with_max_depth(&mut reader, RMPV_DEPTH) {
        Ok(value) if reader.is_empty() => Ok(value),
        Ok(_) => Err("trailing bytes after the value".to_owned()),
        Err(rmpv::decode::Error::DepthLimitExceeded) => Err(format!(
            "arrays and maps nested deeper than {MAX_DEPTH} levels"
        )),
        Err(e) => Err(format!("undecodable value: {e}")),
    }
}

/// The msgid of a frame that starts like a request (`[0, msgid, ...]` with four elements),
/// read from its first bytes without decoding the rest: a request refused for its size or
/// depth is still answered on its msgid.
pub fn peek_msgid(frame: &[u8]) -> Option<u32> {
    let rest = match frame.first()? {
        0x94 => &frame[1..],
        0xdc if frame.get(1..3)? == [0, 4] => &frame[3..],
        0xdd if frame.get(1..5)? == [0, 0, 0, 4] => &frame[5..],
        _ => return None,
    };
    let (kind, rest) = peek_uint(rest)?;
    if kind != REQUEST {
        return None;
    }
    let (msgid, _) = peek_uint(rest)?;
    u32::try_from(msgid).ok()
}

/// A non-negative integer at the start of `bytes`, in any of MessagePack's encodings, and
/// what follows it.
fn peek_uint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (&marker, rest) = bytes.split_first()?;
    let width = match marker {
        0x00..=0x7f => return Some((u64::from(marker), rest)),
        0xcc | 0xd0 => 1,
        0xcd | 0xd1 => 2,
        0xce | 0xd2 => 4,
        0xcf | 0xd3 => 8,
        _ => return None,
    };
    let raw = rest.get(..width)?;
    let value = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let signed = marker >= 0xd0;
    if signed && raw.first().is_some_and(|b| b & 0x80 != 0) {
        return None;
    }
    Some((value, &rest[width..]))
}

/// Whether a stream's first bytes are an HTTP request line, as a browser or an SSRF'd
/// HTTP client sends: every byte of one is a valid MessagePack positive fixint, so without
/// this check each would be answered separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpSniff {
    /// The bytes start with an HTTP method and a space.
    Http,
    /// Too few bytes to tell.
    Maybe,
    /// Not HTTP.
    No,
}

/// HTTP methods that start a request line, with the space after them.
const HTTP_METHODS: &[&[u8]] = &[
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
    b"PRI ",
];

/// Looks at a stream's first bytes for an HTTP request line.
pub fn sniff_http(buf: &[u8]) -> HttpSniff {
    let mut maybe = false;
    for method in HTTP_METHODS {
        if buf.starts_with(method) {
            return HttpSniff::Http;
        }
        if method.starts_with(buf) {
            maybe = true;
        }
    }
    if maybe {
        HttpSniff::Maybe
    } else {
        HttpSniff::No
    }
}

/// A message from a client.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A request, to be answered with a response carrying `msgid`.
    Request {
        /// Echoed in the response.
        msgid: u32,
        /// The method name.
        method: String,
        /// The raw parameters.
        params: Msgpack,
    },
    /// A notification: run, never answered.
    Notification {
        /// The method name.
        method: String,
        /// The raw parameters.
        params: Msgpack,
    },
}

/// Why a value is not a request, and the msgid to answer to when one could be read.
#[derive(Debug, PartialEq)]
pub struct NotARequest {
    /// The request's msgid, if the value had a readable one.
    pub msgid: Option<u32>,
    /// What is wrong.
    pub message: String,
}

/// Reads a decoded value as a request or notification.
pub fn parse_message(value: Msgpack) -> Result<Incoming, NotARequest> {
    let bad = |msgid, message: &str| NotARequest {
        msgid,
        message: message.to_owned(),
    };
    let Msgpack::Array(items) = value else {
        return Err(bad(
            None,
            "a message must be an array: [0, msgid, method, params] or [2, method, params]",
        ));
    };
    let kind = items.first().and_then(Msgpack::as_u64);
    match (kind, items.len()) {
        (Some(REQUEST), 4) => {
            let mut items = items.into_iter().skip(1);
            let (msgid, method, params) = match (items.next(), items.next(), items.next()) {
                (Some(msgid), Some(method), Some(params)) => (msgid, method, params),
                _ => return Err(bad(None, "a request has four elements")),
            };
            let msgid = msgid
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| bad(None, "msgid must be an unsigned 32-bit integer"))?;
            let method = text(method).ok_or_else(|| bad(Some(msgid), "method must be a string"))?;
            Ok(Incoming::Request {
                msgid,
                method,
                params,
            })
        }
        (Some(NOTIFICATION), 3) => {
            let mut items = items.into_iter().skip(1);
            let (method, params) = match (items.next(), items.next()) {
                (Some(method), Some(params)) => (method, params),
                _ => return Err(bad(None, "a notification has three elements")),
            };
            let method = text(method).ok_or_else(|| bad(None, "method must be a string"))?;
            Ok(Incoming::Notification { method, params })
        }
        (Some(REQUEST), _) => Err(bad(None, "a request has four elements")),
        (Some(NOTIFICATION), _) => Err(bad(None, "a notification has three elements")),
        (Some(RESPONSE), _) => Err(bad(None, "the server does not take responses")),
        _ => Err(bad(
            None,
            "the first element must be 0 (request) or 2 (notification)",
        )),
    }
}

/// Text from a string, or from binary that is valid UTF-8: clients written against the old
/// MessagePack spec (before `str` and `bin` were told apart) send text as binary.
fn text(value: Msgpack) -> Option<String> {
    match value {
        Msgpack::String(s) => s.into_str(),
        Msgpack::Binary(bytes) => String::from_utf8(bytes).ok(),
        _ => None,
    }
}

/// Turns request parameters into the map the handlers deserialize.
///
/// The spec makes `params` an array; this server takes one map, sent either as
/// `[ {..} ]` or as the map itself. Nil and an empty array mean an empty map.
pub fn params_map(params: Msgpack) -> Result<Value, RpcError> {
    let map = match params {
        Msgpack::Nil => return Ok(Value::Object(Map::new())),
        Msgpack::Map(_) => params,
        Msgpack::Array(mut items) if items.len() <= 1 => match items.pop() {
            None | Some(Msgpack::Nil) => return Ok(Value::Object(Map::new())),
            Some(map @ Msgpack::Map(_)) => map,
            Some(_) => return Err(params_shape_error()),
        },
        _ => return Err(params_shape_error()),
    };
    let mut path = Vec::new();
    to_json(map, &mut path).map_err(|(path, message)| {
        let field = render_path(&path);
        RpcError::new(ErrorCode::InvalidParams, format!("{field}: {message}"))
            .with_data(serde_json::json!({ "field": field }))
    })
}

fn params_shape_error() -> RpcError {
    RpcError::new(
        ErrorCode::InvalidParams,
        "params must be a map, or an array holding one map",
    )
}

/// A step into a value, for naming the field a problem is in.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn render_path(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

type PathError = (Vec<Step>, String);

/// MessagePack to the JSON data model. Recursion depth is bounded by [`MAX_DEPTH`], which
/// [`decode_frame`] enforced.
fn to_json(value: Msgpack, path: &mut Vec<Step>) -> Result<Value, PathError> {
    let fail = |path: &Vec<Step>, message: &str| Err((path.clone(), message.to_owned()));
    Ok(match value {
        Msgpack::Nil => Value::Null,
        Msgpack::Boolean(b) => Value::Bool(b),
        Msgpack::Integer(i) => {
            if let Some(u) = i.as_u64() {
                Value::from(u)
            } else if let Some(s) = i.as_i64() {
                Value::from(s)
            } else {
                return fail(path, "integer out of range");
            }
        }
        Msgpack::F32(f) => match serde_json::Number::from_f64(f64::from(f)) {
            Some(n) => Value::Number(n),
            None => return fail(path, "NaN and infinite numbers are not accepted"),
        },
        Msgpack::F64(f) => match serde_json::Number::from_f64(f) {
            Some(n) => Value::Number(n),
            None => return fail(path, "NaN and infinite numbers are not accepted"),
        },
        Msgpack::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => return fail(path, "string is not valid UTF-8"),
        },
        Msgpack::Binary(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Value::String(s),
            Err(_) => return fail(path, "binary values are not accepted"),
        },
        Msgpack::Ext(..) => return fail(path, "extension values are not accepted"),
        Msgpack::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push(Step::Index(i));
                out.push(to_json(item, path)?);
                path.pop();
            }
            Value::Array(out)
        }
        Msgpack::Map(entries) => {
            let mut out = Map::new();
            for (key, item) in entries {
                let Some(key) = text(key) else {
                    return fail(path, "map keys must be strings");
                };
                path.push(Step::Key(key.clone()));
                let item = to_json(item, path)?;
                path.pop();
                if out.insert(key.clone(), item).is_some() {
                    path.push(Step::Key(key));
                    return fail(path, "duplicate key");
                }
            }
            Value::Object(out)
        }
    })
}

/// Converts any decoded value to the JSON data model, for the client's results and events.
pub fn msgpack_to_json(value: Msgpack) -> Result<Value, String> {
    to_json(value, &mut Vec::new())
        .map_err(|(path, message)| format!("{}: {message}", render_path(&path)))
}

/// The error slot of a response or the payload of an `error` notification:
/// `{code, message}` plus `data` when there is some.
pub fn error_map(e: &RpcError) -> Value {
    let mut map = Map::new();
    map.insert("code".into(), Value::from(e.code.as_str()));
    map.insert("message".into(), Value::from(e.message.clone()));
    if let Some(data) = &e.data {
        map.insert("data".into(), data.clone());
    }
    Value::Object(map)
}

/// Encodes `[1, msgid, error, result]`.
pub fn encode_response(msgid: u32, outcome: &Result<Value, RpcError>) -> Vec<u8> {
    // Encoding a JSON value into a Vec cannot fail: every variant has a MessagePack form and
    // map keys are strings.
    let encoded = match outcome {
        Ok(result) => rmp_serde::to_vec(&(RESPONSE, msgid, (), result)),
        Err(e) => rmp_serde::to_vec(&(RESPONSE, msgid, error_map(e), ())),
    };
    encoded.unwrap_or_default()
}

/// Encodes `[2, method, [params]]`.
///
/// Parameters are JSON values, not any `Serialize`: MessagePack serializers are not
/// human-readable, so ids (UUIDs) would go out as 16 raw bytes instead of text.
pub fn encode_notification(method: &str, params: &Value) -> Vec<u8> {
    rmp_serde::to_vec(&(NOTIFICATION, method, [params])).unwrap_or_default()
}

/// Encodes the `error` notification a connection gets for a problem no request owns.
pub fn encode_error_notification(error: &RpcError) -> Vec<u8> {
    encode_notification("error", &error_map(error))
}

/// Encodes a request, for clients: `[0, msgid, method, [params]]`.
pub fn encode_request(msgid: u32, method: &str, params: &Value) -> Vec<u8> {
    rmp_serde::to_vec(&(REQUEST, msgid, method, [params])).unwrap_or_default()
}

#[cfg(test)]
mod tests;
