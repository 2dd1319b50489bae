//! Reply encoding, server side: values go straight into the connection's write buffer.
//!
//! Each function appends one RESP value (or an aggregate's header, after which the caller
//! appends the elements). Where RESP3 has a type RESP2 lacks, the function takes the
//! [`Protocol`] and writes what Redis writes to a RESP2 client:
//!
//! | value | RESP3 | RESP2 |
//! |---|---|---|
//! | null | `_` | `$-1` (bulk) or `*-1` ([`null_array`]) |
//! | map of n pairs | `%n` | `*2n` (flat array) |
//! | set of n | `~n` | `*n` |
//! | double | `,1.5` | `$3 1.5` (bulk string) |
//! | boolean | `#t` | `:1` |
//! | verbatim text | `=n txt:...` | bulk string |
//!
//! Integers are formatted with `itoa`, without going through `fmt`.

use bytes::{BufMut, BytesMut};

/// The protocol version a connection speaks: RESP2 until the client sends `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

fn line(buf: &mut BytesMut, sigil: u8, n: i64) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    buf.reserve(digits.len() + 3);
    buf.put_u8(sigil);
    buf.put_slice(digits.as_bytes());
    buf.put_slice(b"\r\n");
}

/// `+text\r\n`. `text` must not contain `\r` or `\n`.
pub fn simple(buf: &mut BytesMut, text: &str) {
    buf.reserve(text.len() + 3);
    buf.put_u8(b'+');
    buf.put_slice(text.as_bytes());
    buf.put_slice(b"\r\n");
}

/// `-message\r\n`. The message starts with its code, as in Redis: `ERR ...`,
/// `WRONGTYPE ...`, `NOAUTH ...`. Line breaks in it are replaced by spaces, as Redis does,
/// so a message can never break the framing.
pub fn error(buf: &mut BytesMut, message: &str) {
    buf.reserve(message.len() + 3);
    buf.put_u8(b'-');
    for &b in message.as_bytes() {
        buf.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    buf.put_slice(b"\r\n");
}

/// `:n\r\n`.
pub fn integer(buf: &mut BytesMut, n: i64) {
    line(buf, b':', n);
}

/// `$len\r\nbytes\r\n`.
pub fn bulk(buf: &mut BytesMut, bytes: &[u8]) {
    line(buf, b'$', bytes.len() as i64);
    buf.reserve(bytes.len() + 2);
    buf.put_slice(bytes);
    buf.put_slice(b"\r\n");
}

/// A missing value: `_` in RESP3, the null bulk string `$-1` in RESP2.
pub fn null(buf: &mut BytesMut, protocol: Protocol) {
    buf.put_slice(match protocol {
        Protocol::Resp3 => b"_\r\n",
        Protocol::Resp2 => b"$-1\r\n",
    });
}

/// A missing aggregate: `_` in RESP3, the null array `*-1` in RESP2.
pub fn null_array(buf: &mut BytesMut, protocol: Protocol) {
    buf.put_slice(match protocol {
        Protocol::Resp3 => b"_\r\n",
        Protocol::Resp2 => b"*-1\r\n",
    });
}

/// `*len\r\n`; `len` elements must follow.
pub fn array_header(buf: &mut BytesMut, len: usize) {
    line(buf, b'*', len as i64);
}

/// A map of `pairs` key-value pairs: `%pairs` in RESP3, `*2·pairs` in RESP2. Keys and
/// values must follow, alternating.
pub fn map_header(buf: &mut BytesMut, pairs: usize, protocol: Protocol) {
    match protocol {
        Protocol::Resp3 => line(buf, b'%', pairs as i64),
        Protocol::Resp2 => line(buf, b'*', 2 * pairs as i64),
    }
}

/// A set of `len` members: `~len` in RESP3, `*len` in RESP2.
pub fn set_header(buf: &mut BytesMut, len: usize, protocol: Protocol) {
    match protocol {
        Protocol::Resp3 => line(buf, b'~', len as i64),
        Protocol::Resp2 => line(buf, b'*', len as i64),
    }
}

/// An out-of-band push of `len` elements (`>len` in RESP3), such as an invalidation
/// message; RESP2 has no pushes and gets an array.
pub fn push_header(buf: &mut BytesMut, len: usize, protocol: Protocol) {
    match protocol {
        Protocol::Resp3 => line(buf, b'>', len as i64),
        Protocol::Resp2 => line(buf, b'*', len as i64),
    }
}

/// A double: `,text` in RESP3, a bulk string in RESP2; text as [`format_double`].
pub fn double(buf: &mut BytesMut, value: f64, protocol: Protocol) {
    let text = format_double(value);
    match protocol {
        Protocol::Resp3 => {
            buf.reserve(text.len() + 3);
            buf.put_u8(b',');
            buf.put_slice(text.as_bytes());
            buf.put_slice(b"\r\n");
        }
        Protocol::Resp2 => bulk(buf, text.as_bytes()),
    }
}

/// A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
pub fn boolean(buf: &mut BytesMut, value: bool, protocol: Protocol) {
    match protocol {
        Protocol::Resp3 => buf.put_slice(if value { b"#t\r\n" } else { b"#f\r\n" }),
        Protocol::Resp2 => integer(buf, i64::from(value)),
    }
}

/// Human-readable text (INFO, CLIENT INFO): a verbatim string of format `txt` in RESP3,
/// a bulk string in RESP2.
pub fn verbatim_text(buf: &mut BytesMut, text: &[u8], protocol: Protocol) {
    match protocol {
        Protocol::Resp3 => {
            line(buf, b'=', text.len() as i64 + 4);
            buf.reserve(text.len() + 6);
            buf.put_slice(b"txt:");
            buf.put_slice(text);
            buf.put_slice(b"\r\n");
        }
        Protocol::Resp2 => bulk(buf, text),
    }
}

/// A command as a client sends it: an array of bulk strings.
pub fn command<A: AsRef<[u8]>>(buf: &mut BytesMut, args: &[A]) {
    array_header(buf, args.len());
    for arg in args {
        bulk(buf, arg.as_ref());
    }
}

/// Formats a double the way Redis replies with one: the shortest text that reads back
/// as the same value, in plain notation between 1e-4 and 1e17 and in C's `%g`-style
/// exponent notation (`1e+20`, `1.5e-07`) outside it; `inf`, `-inf`, `nan`.
pub fn format_double(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.into();
    }
    let magnitude = value.abs();
    if magnitude == 0.0 || (1e-4..1e17).contains(&magnitude) {
        return format!("{value}");
    }
    let text = format!("{value:e}");
    let (mantissa, exponent) = text.split_once('e').expect("`e` format has an exponent");
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(write: impl FnOnce(&mut BytesMut)) -> String {
        let mut buf = BytesMut::new();
        write(&mut buf);
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn scalars() {
        assert_eq!(encoded(|b| simple(b, "OK")), "+OK\r\n");
        assert_eq!(
            encoded(|b| error(b, "ERR bad\r\nthing")),
            "-ERR bad  thing\r\n"
        );
        assert_eq!(encoded(|b| integer(b, -42)), ":-42\r\n");
        assert_eq!(encoded(|b| bulk(b, b"")), "$0\r\n\r\n");
        assert_eq!(encoded(|b| bulk(b, b"hi")), "$2\r\nhi\r\n");
    }

    #[test]
    fn resp3_types_downgrade_for_resp2() {
        use Protocol::*;
        assert_eq!(encoded(|b| null(b, Resp2)), "$-1\r\n");
        assert_eq!(encoded(|b| null(b, Resp3)), "_\r\n");
        assert_eq!(encoded(|b| null_array(b, Resp2)), "*-1\r\n");
        assert_eq!(encoded(|b| map_header(b, 2, Resp2)), "*4\r\n");
        assert_eq!(encoded(|b| map_header(b, 2, Resp3)), "%2\r\n");
        assert_eq!(encoded(|b| set_header(b, 3, Resp3)), "~3\r\n");
        assert_eq!(encoded(|b| double(b, 1.5, Resp3)), ",1.5\r\n");
        assert_eq!(encoded(|b| double(b, 1.5, Resp2)), "$3\r\n1.5\r\n");
        assert_eq!(encoded(|b| boolean(b, true, Resp3)), "#t\r\n");
        assert_eq!(encoded(|b| boolean(b, false, Resp2)), ":0\r\n");
        assert_eq!(
            encoded(|b| verbatim_text(b, b"a:1", Resp3)),
            "=7\r\ntxt:a:1\r\n"
        );
        assert_eq!(
            encoded(|b| verbatim_text(b, b"a:1", Resp2)),
            "$3\r\na:1\r\n"
        );
        assert_eq!(encoded(|b| push_header(b, 2, Resp3)), ">2\r\n");
    }

    #[test]
    fn doubles_read_like_redis() {
        for (value, text) in [
            (3.0, "3"),
            (-0.5, "-0.5"),
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (1.5e-7, "1.5e-07"),
            (123456.789, "123456.789"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (0.0, "0"),
        ] {
            assert_eq!(format_double(value), text);
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encoded(|b| command(b, &["SET", "k", "v"])),
            "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
        );
    }
}
