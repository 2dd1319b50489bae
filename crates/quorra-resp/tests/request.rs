//! The request parser against Redis's behaviour: what it accepts, how it splits inline
//! commands, and the exact error texts for what it refuses.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use quorra_resp::{Limits, ProtocolError, RequestParser, encode};

/// Parses everything in `input` at once; the commands, then the error if one stopped it.
fn parse_all(input: &[u8], limits: Limits) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::from(input);
    let mut commands = Vec::new();
    loop {
        match parser.next_request(&mut buf) {
            Ok(Some(command)) => commands.push(command),
            Ok(None) => return (commands, None),
            Err(error) => return (commands, Some(error)),
        }
    }
}

fn words(command: &[Bytes]) -> Vec<String> {
    command
        .iter()
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

fn one(input: &[u8]) -> Vec<String> {
    let (commands, error) = parse_all(input, Limits::default());
    assert_eq!(error, None);
    assert_eq!(commands.len(), 1, "{commands:?}");
    words(&commands[0])
}

fn error_text(input: &[u8], limits: Limits) -> String {
    parse_all(input, limits).1.expect("an error").to_string()
}

#[test]
fn multibulk_and_inline_requests() {
    assert_eq!(one(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), ["GET", "k"]);
    assert_eq!(one(b"*1\r\n$0\r\n\r\n"), [""]);
    assert_eq!(one(b"PING\r\n"), ["PING"]);
    assert_eq!(one(b"set  a   b\n"), ["set", "a", "b"]);
    assert_eq!(one(b"SET \"a b\" 'c d'\r\n"), ["SET", "a b", "c d"]);
    assert_eq!(one(b"ECHO \"\\x41\\n\\\"q\\\"\"\r\n"), ["ECHO", "A\n\"q\""]);
    assert_eq!(one(b"ECHO 'it\\'s'\r\n"), ["ECHO", "it's"]);
    // A quote may open mid-word; the closing quote must end the word.
    assert_eq!(one(b"ECHO a\"b c\" d\r\n"), ["ECHO", "ab c", "d"]);
    // Redis splits a C string: a NUL ends the line.
    assert_eq!(one(b"ECHO a\0b c\r\n"), ["ECHO", "a"]);
}

#[test]
fn empty_requests_are_skipped_like_redis() {
    let (commands, error) = parse_all(b"*0\r\n*-1\r\n\r\n   \r\nPING\r\n", Limits::default());
    assert_eq!(error, None);
    assert_eq!(
        commands.iter().map(|c| words(c)).collect::<Vec<_>>(),
        [["PING"]]
    );
}

#[test]
fn pipelined_requests_come_out_in_order() {
    let mut input = Vec::new();
    for i in 0..100 {
        input.extend_from_slice(
            format!("*2\r\n$4\r\nINCR\r\n${}\r\nk{i}\r\n", format!("k{i}").len()).as_bytes(),
        );
    }
    input.extend_from_slice(b"PING\r\n");
    let (commands, error) = parse_all(&input, Limits::default());
    assert_eq!(error, None);
    assert_eq!(commands.len(), 101);
    assert_eq!(words(&commands[42]), ["INCR", "k42"]);
}

#[test]
fn protocol_errors_use_redis_texts() {
    let defaults = Limits::default();
    assert_eq!(
        error_text(b"*abc\r\n", defaults),
        "Protocol error: invalid multibulk length"
    );
    assert_eq!(
        error_text(b"*01\r\n", defaults),
        "Protocol error: invalid multibulk length"
    );
    assert_eq!(
        error_text(b"*1\r\n+OK\r\n", defaults),
        "Protocol error: expected '$', got '+'"
    );
    assert_eq!(
        error_text(b"*1\r\n$-1\r\n", defaults),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(
        error_text(b"*1\r\n$x\r\n", defaults),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(
        error_text(b"ECHO \"abc\r\n", defaults),
        "Protocol error: unbalanced quotes in request"
    );
    assert_eq!(
        error_text(b"ECHO \"a\"b\r\n", defaults),
        "Protocol error: unbalanced quotes in request"
    );
    let tight = Limits {
        max_inline_len: 16,
        ..defaults
    };
    assert_eq!(
        error_text(&[b'a'; 17], tight),
        "Protocol error: too big inline request"
    );
    assert_eq!(
        error_text(&[b'a'; 30], tight),
        "Protocol error: too big inline request"
    );
    let mut long_count = b"*".to_vec();
    long_count.extend_from_slice(&[b'1'; 17]);
    assert_eq!(
        error_text(&long_count, tight),
        "Protocol error: too big mbulk count string"
    );
    let mut long_len = b"*1\r\n$".to_vec();
    long_len.extend_from_slice(&[b'1'; 17]);
    assert_eq!(
        error_text(&long_len, tight),
        "Protocol error: too big bulk count string"
    );
}

#[test]
fn limits_bound_what_a_client_can_make_us_hold() {
    let limits = Limits {
        max_bulk_len: 10,
        max_args: 3,
        max_query_buffer: 64,
        ..Limits::default()
    };
    assert_eq!(
        error_text(b"*1\r\n$11\r\n", limits),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(parse_all(b"*1\r\n$10\r\n0123456789\r\n", limits).1, None);
    assert_eq!(
        error_text(b"*4\r\n", limits),
        "Protocol error: invalid multibulk length"
    );
    // Three 10-byte arguments fit the bulk limit, but not 64 bytes of query buffer
    // together with what is still waiting.
    let mut input = b"*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n".to_vec();
    input.extend_from_slice(&[b'x'; 9]);
    let mut big = limits;
    big.max_query_buffer = 25;
    assert_eq!(
        error_text(&input, big),
        "Protocol error: query buffer limit reached"
    );
    // The default bulk limit is Redis's proto-max-bulk-len, 512 MB.
    assert_eq!(
        error_text(b"*1\r\n$536870913\r\n", Limits::default()),
        "Protocol error: invalid bulk length"
    );
}

#[test]
fn a_huge_announced_count_allocates_nothing_up_front() {
    // One million arguments announced, none sent: the parser waits without reserving
    // space for a million arguments.
    let (commands, error) = parse_all(b"*1000000\r\n", Limits::default());
    assert!(commands.is_empty() && error.is_none());
}

fn arb_command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6)
}

proptest! {
    #[test]
    fn any_split_of_a_pipeline_parses_the_same(
        commands in prop::collection::vec(arb_command(), 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut wire = BytesMut::new();
        for command in &commands {
            encode::command(&mut wire, command);
        }
        let wire = wire.freeze();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();

        let mut parser = RequestParser::default();
        let mut buf = BytesMut::new();
        let mut parsed = Vec::new();
        let mut fed = 0;
        for cut in cuts {
            buf.extend_from_slice(&wire[fed..cut]);
            fed = cut;
            while let Some(command) = parser.next_request(&mut buf).unwrap() {
                parsed.push(command.iter().map(|arg| arg.to_vec()).collect::<Vec<_>>());
            }
        }
        prop_assert_eq!(parsed, commands);
        prop_assert!(buf.is_empty() && !parser.is_mid_request());
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..300)) {
        let limits = Limits { max_inline_len: 64, max_bulk_len: 64, max_args: 8, max_query_buffer: 256 };
        let _ = parse_all(&input, limits);
    }
}
