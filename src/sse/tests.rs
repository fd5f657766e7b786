//! Table tests for every parser and encoder rule, and property tests for
//! round trips, chunking invariance and limits.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Everything a parser produced for some input.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    blocks: Vec<Block>,
    error: Option<SseError>,
    partial: bool,
}

/// Feeds `chunks` one at a time, draining the parser after each.
fn run_with<I>(chunks: I, limits: SseLimits) -> Outcome
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut parser = SseParser::new(limits);
    let mut blocks = Vec::new();
    for chunk in chunks {
        parser.feed(Bytes::copy_from_slice(chunk.as_ref()));
        loop {
            match parser.next_block() {
                Ok(Some(block)) => blocks.push(block),
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        blocks,
                        error: Some(error),
                        partial: parser.has_partial_block(),
                    };
                }
            }
        }
    }
    Outcome {
        blocks,
        error: None,
        partial: parser.has_partial_block(),
    }
}

fn run<I>(chunks: I) -> Outcome
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    run_with(chunks, SseLimits::default())
}

/// Blocks of an input that must parse without error.
fn blocks(input: &[u8]) -> Vec<Block> {
    let outcome = run([input]);
    assert_eq!(outcome.error, None, "input {input:?}");
    outcome.blocks
}

fn b(value: &[u8]) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(value))
}

fn empty_event() -> SseEvent {
    SseEvent {
        event_type: None,
        data: None,
        id: None,
        retry: None,
    }
}

fn data(value: &[u8]) -> Block {
    Block::Event(SseEvent {
        data: b(value),
        ..empty_event()
    })
}

fn comment(raw: &[u8]) -> Block {
    Block::Comment(Bytes::copy_from_slice(raw))
}

fn ptr_range(chunk: &Bytes) -> std::ops::Range<usize> {
    let start = chunk.as_ptr() as usize;
    start..start + chunk.len()
}

/// Whether `value` points into `chunk`'s memory.
fn is_slice_of(value: &Bytes, chunk: &Bytes) -> bool {
    let range = ptr_range(chunk);
    let start = value.as_ptr() as usize;
    !value.is_empty() && range.contains(&start) && start + value.len() <= range.end
}

// ---------------------------------------------------------------- BOM

#[test]
fn bom_at_start_is_skipped() {
    assert_eq!(blocks(b"\xEF\xBB\xBFdata: x\n\n"), [data(b"x")]);
    assert_eq!(blocks(b"\xEF\xBB\xBF: hi\n\n"), [comment(b": hi\n\n")]);
}

#[test]
fn bom_split_across_chunks_is_skipped() {
    let expected = run([&b"data: x\n\n"[..]]);
    assert_eq!(run([&b"\xEF"[..], b"\xBB\xBFdata: x\n\n"]), expected);
    assert_eq!(run([&b"\xEF\xBB"[..], b"\xBFdata: x\n\n"]), expected);
    assert_eq!(
        run([&b"\xEF"[..], b"\xBB", b"\xBF", b"data: x\n\n"]),
        expected
    );
}

#[test]
fn bom_after_start_is_data() {
    // A second BOM is part of the first field name, which is then unknown.
    assert_eq!(blocks(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n"), []);
    // A BOM at the start of a later line is part of that line too.
    assert_eq!(blocks(b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"), [data(b"x")]);
    // And in a value it is just bytes.
    assert_eq!(blocks(b"data: \xEF\xBB\xBF\n\n"), [data(BOM)]);
    assert_eq!(
        run([&b"data: a\n\n"[..], b"\xEF", b"\xBB\xBF", b"data: y\n\n"]).blocks,
        [data(b"a")]
    );
}

#[test]
fn partial_bom_prefix_is_line_content() {
    // EF BB then a line end: a one-line block with an unknown field, not an
    // empty line.
    let outcome = run([&b"\xEF\xBB"[..], b"\n"]);
    assert_eq!(outcome.blocks, []);
    assert!(outcome.partial);
    assert_eq!(blocks(b"\xEF\xBBdata: x\n\ndata: y\n\n"), [data(b"y")]);
    assert_eq!(blocks(b"\xEFdata: x\n\ndata: y\n\n"), [data(b"y")]);
    // The matched prefix stays part of the line when the mismatch comes in a
    // later chunk.
    assert_eq!(
        run([&b"\xEF"[..], b"\xBB", b"data: x\n\ndata: y\n\n"]).blocks,
        [data(b"y")]
    );
    // A stream cut inside the BOM holds an unfinished line.
    assert!(run([&b"\xEF\xBB"[..]]).partial);
    assert!(!run([BOM]).partial);
}

// ---------------------------------------------------------------- line ends

#[test]
fn lf_crlf_and_lone_cr_all_end_lines() {
    for end in [&b"\n"[..], b"\r\n", b"\r"] {
        let input = [&b"data: a"[..], end, b"data: b", end, end].concat();
        assert_eq!(blocks(&input), [data(b"a\nb")], "line end {end:?}");
    }
    assert_eq!(
        blocks(b"data: a\rdata: b\r\ndata: c\n\r\n"),
        [data(b"a\nb\nc")]
    );
}

#[test]
fn cr_and_lf_in_different_chunks_are_one_line_end() {
    // Were the LF a second line end, it would be an empty line dispatching
    // "a" on its own.
    assert_eq!(
        run([&b"data: a\r"[..], b"\ndata: b\r\n\r\n"]).blocks,
        [data(b"a\nb")]
    );
    assert_eq!(
        run([&b"data: a\r"[..], b"\n", b"data: b\r", b"\n\r", b"\n"]).blocks,
        [data(b"a\nb")]
    );
    // Only one LF is absorbed: the next one is an empty line.
    assert_eq!(
        run([&b"data: a\r"[..], b"\n", b"\n", b"data: b\n\n"]).blocks,
        [data(b"a"), data(b"b")]
    );
    // Empty chunks in between change nothing.
    assert_eq!(
        run([&b"data: a\r"[..], b"", b"\ndata: b\n\n"]).blocks,
        [data(b"a\nb")]
    );
}

#[test]
fn cr_at_chunk_end_followed_by_other_byte_is_a_lone_cr() {
    assert_eq!(
        run([&b"data: a\r"[..], b"data: b\r", b"\r"]).blocks,
        [data(b"a\nb")]
    );
    // CR CR is two line ends: the second one is an empty line.
    assert_eq!(blocks(b"data: a\r\r"), [data(b"a")]);
    assert_eq!(run([&b"data: a\r"[..], b"\r"]).blocks, [data(b"a")]);
}

#[test]
fn every_two_way_split_parses_like_the_whole() {
    let input: &[u8] = b"\xEF\xBB\xBF: hi\r\n\r\nevent: e\r\nid: 1\rdata: a\r\ndata:  b\n\
                         retry: 10\r\n\r\n:x\n\ndata\r\r\nid: 2\n";
    let whole = run([input]);
    assert_eq!(whole.blocks.len(), 4);
    assert!(whole.partial);
    for k in 0..=input.len() {
        assert_eq!(run([&input[..k], &input[k..]]), whole, "split at {k}");
    }
    assert_eq!(run(input.chunks(1)), whole);
}

// ---------------------------------------------------------------- blocks

#[test]
fn empty_line_dispatches_the_block() {
    let outcome = run([&b"data: a\n"[..]]);
    assert_eq!(outcome.blocks, []);
    let outcome = run([&b"data: a\n"[..], b"\n"]);
    assert_eq!(outcome.blocks, [data(b"a")]);
    assert!(!outcome.partial);
}

#[test]
fn consecutive_empty_lines_yield_nothing_extra() {
    assert_eq!(blocks(b"\n\n\r\n\rdata: a\n\n\n\n\r\n"), [data(b"a")]);
    assert_eq!(blocks(b"\n\n\n"), []);
}

#[test]
fn comment_only_block_is_a_comment_block() {
    assert_eq!(blocks(b": ping\n\n"), [comment(b": ping\n\n")]);
    assert_eq!(blocks(b":\n\n"), [comment(b":\n\n")]);
    assert_eq!(blocks(b": a\n:b\n::c\n\n"), [comment(b": a\n:b\n::c\n\n")]);
    assert_eq!(
        blocks(b": a\n\ndata: x\n\n: b\n\n"),
        [comment(b": a\n\n"), data(b"x"), comment(b": b\n\n")]
    );
}

#[test]
fn comment_block_is_normalised_to_lf() {
    assert_eq!(blocks(b": a\r\n: b\r\r\n"), [comment(b": a\n: b\n\n")]);
    assert_eq!(blocks(b": a\n: b\r\n\n"), [comment(b": a\n: b\n\n")]);
    assert_eq!(blocks(b": a\r: b\n\r"), [comment(b": a\n: b\n\n")]);
    assert_eq!(
        run([&b": a\n: "[..], b"b\n", b"\n"]).blocks,
        [comment(b": a\n: b\n\n")]
    );
}

#[test]
fn comments_in_an_event_block_are_dropped() {
    assert_eq!(blocks(b": x\ndata: a\n: y\n\n"), [data(b"a")]);
    assert_eq!(
        blocks(b": x\nretry: 5\n\n"),
        [Block::Event(SseEvent {
            retry: Some(5),
            ..empty_event()
        })]
    );
}

#[test]
fn comments_with_only_unknown_fields_yield_the_comments() {
    assert_eq!(
        blocks(b": x\nfoo: 1\n: y\nretry: no\n\n"),
        [comment(b": x\n: y\n\n")]
    );
}

#[test]
fn block_without_event_fields_or_comments_yields_nothing() {
    assert_eq!(blocks(b"foo: bar\n\n"), []);
    assert_eq!(blocks(b"foo\nbar:\n\n"), []);
    // Fields that are ignored do not make an event either.
    assert_eq!(blocks(b"retry: x\nid: a\0b\n\n"), []);
}

// ---------------------------------------------------------------- fields

#[test]
fn exactly_one_leading_space_is_removed_from_the_value() {
    assert_eq!(blocks(b"data:x\n\n"), [data(b"x")]);
    assert_eq!(blocks(b"data: x\n\n"), [data(b"x")]);
    assert_eq!(blocks(b"data:  x\n\n"), [data(b" x")]);
    assert_eq!(blocks(b"data: \n\n"), [data(b"")]);
    assert_eq!(blocks(b"data:  \n\n"), [data(b" ")]);
    assert_eq!(blocks(b"data:\tx\n\n"), [data(b"\tx")]);
    assert_eq!(blocks(b"data: x \n\n"), [data(b"x ")]);
}

#[test]
fn value_keeps_later_colons() {
    assert_eq!(blocks(b"data: a: b:c\n\n"), [data(b"a: b:c")]);
    assert_eq!(blocks(b"data::\n\n"), [data(b":")]);
}

#[test]
fn line_without_colon_is_a_field_with_empty_value() {
    assert_eq!(blocks(b"data\n\n"), [data(b"")]);
    assert_eq!(
        blocks(b"event\n\n"),
        [Block::Event(SseEvent {
            event_type: b(b""),
            ..empty_event()
        })]
    );
    assert_eq!(
        blocks(b"id\n\n"),
        [Block::Event(SseEvent {
            id: b(b""),
            ..empty_event()
        })]
    );
    // `retry` with an empty value is not all digits: ignored.
    assert_eq!(blocks(b"retry\n\n"), []);
}

#[test]
fn field_names_are_case_sensitive() {
    assert_eq!(blocks(b"Data: x\nEVENT: y\nId: 1\nRetry: 5\n\n"), []);
    // A space before the colon is part of the name.
    assert_eq!(blocks(b"data : x\n\n"), []);
    assert_eq!(blocks(b" data: x\n\n"), []);
}

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(blocks(b"foo: bar\ndata: x\nbaz\n\n"), [data(b"x")]);
}

#[test]
fn data_lines_are_joined_with_lf() {
    assert_eq!(blocks(b"data: a\ndata: b\ndata: c\n\n"), [data(b"a\nb\nc")]);
    assert_eq!(
        run([&b"data: a\nda"[..], b"ta: b\r", b"\ndata: c\n", b"\n"]).blocks,
        [data(b"a\nb\nc")]
    );
}

#[test]
fn empty_data_lines_are_kept() {
    assert_eq!(blocks(b"data:\n\n"), [data(b"")]);
    assert_eq!(blocks(b"data\ndata\n\n"), [data(b"\n")]);
    assert_eq!(blocks(b"data: a\ndata:\n\n"), [data(b"a\n")]);
    assert_eq!(blocks(b"data:\ndata: a\n\n"), [data(b"\na")]);
    // No data line at all is `None`, not empty.
    assert_eq!(
        blocks(b"event: e\n\n"),
        [Block::Event(SseEvent {
            event_type: b(b"e"),
            ..empty_event()
        })]
    );
}

#[test]
fn event_field_sets_the_type_and_the_last_one_wins() {
    assert_eq!(
        blocks(b"event: a\ndata: x\nevent: b\n\n"),
        [Block::Event(SseEvent {
            event_type: b(b"b"),
            data: b(b"x"),
            ..empty_event()
        })]
    );
    // NUL is allowed in an event type.
    assert_eq!(
        blocks(b"event: a\0b\n\n"),
        [Block::Event(SseEvent {
            event_type: b(b"a\0b"),
            ..empty_event()
        })]
    );
}

#[test]
fn id_field_last_valid_one_wins_and_nul_is_ignored() {
    let id = |value: &[u8]| {
        Block::Event(SseEvent {
            id: b(value),
            ..empty_event()
        })
    };
    assert_eq!(blocks(b"id: 1\nid: 2\n\n"), [id(b"2")]);
    assert_eq!(blocks(b"id: 1\nid: a\0b\n\n"), [id(b"1")]);
    assert_eq!(blocks(b"id: \0\n\n"), []);
    assert_eq!(blocks(b"id:\n\n"), [id(b"")]);
    assert_eq!(blocks(b"id: \n\n"), [id(b"")]);
    assert_eq!(blocks(b"id:  x\n\n"), [id(b" x")]);
    // Ids are per block.
    assert_eq!(
        blocks(b"id: 1\ndata: a\n\ndata: b\n\n"),
        [
            Block::Event(SseEvent {
                id: b(b"1"),
                data: b(b"a"),
                ..empty_event()
            }),
            data(b"b"),
        ]
    );
}

#[test]
fn retry_needs_ascii_digits_only() {
    let retry = |input: &[u8]| match blocks(input).as_slice() {
        [] => None,
        [Block::Event(event)] => event.retry,
        other => panic!("unexpected blocks {other:?}"),
    };
    assert_eq!(retry(b"retry: 3000\n\n"), Some(3000));
    assert_eq!(retry(b"retry:0\n\n"), Some(0));
    assert_eq!(retry(b"retry: 007\n\n"), Some(7));
    assert_eq!(retry(b"retry: 18446744073709551615\n\n"), Some(u64::MAX));
    assert_eq!(retry(b"retry: 1\nretry: 2\n\n"), Some(2));
    assert_eq!(retry(b"retry: 1\nretry: x\n\n"), Some(1));
    for ignored in [
        &b"retry:\n\n"[..],
        b"retry: \n\n",
        b"retry:  5\n\n",
        b"retry: 5 \n\n",
        b"retry: +5\n\n",
        b"retry: -5\n\n",
        b"retry: 1.5\n\n",
        b"retry: 5s\n\n",
        b"retry: \xEF\xBC\x95\n\n",
        b"retry: 18446744073709551616\n\n",
        b"retry: 99999999999999999999999\n\n",
    ] {
        assert_eq!(retry(ignored), None, "{ignored:?}");
    }
}

#[test]
fn block_without_data_is_still_an_event() {
    assert_eq!(
        blocks(b"event: e\n\nretry: 10\n\nid: 5\n\nid: 6\ndata:\n\n"),
        [
            Block::Event(SseEvent {
                event_type: b(b"e"),
                ..empty_event()
            }),
            Block::Event(SseEvent {
                retry: Some(10),
                ..empty_event()
            }),
            Block::Event(SseEvent {
                id: b(b"5"),
                ..empty_event()
            }),
            Block::Event(SseEvent {
                id: b(b"6"),
                data: b(b""),
                ..empty_event()
            }),
        ]
    );
}

#[test]
fn all_fields_together() {
    assert_eq!(
        blocks(b"retry: 1\ndata: a\nid: 7\nevent: message\ndata: b\n\n"),
        [Block::Event(SseEvent {
            event_type: b(b"message"),
            data: b(b"a\nb"),
            id: b(b"7"),
            retry: Some(1),
        })]
    );
}

#[test]
fn invalid_utf8_passes_through() {
    assert_eq!(blocks(b"data: \xFF\xC3(\n\n"), [data(b"\xFF\xC3(")]);
}

// ---------------------------------------------------------------- partial blocks

#[test]
fn unfinished_event_is_not_dispatched() {
    let mut parser = SseParser::new(SseLimits::default());
    assert!(!parser.has_partial_block());
    parser.feed(Bytes::from_static(b"data: a\n\ndata: b\nid: 1"));
    assert_eq!(parser.next_block(), Ok(Some(data(b"a"))));
    assert_eq!(parser.next_block(), Ok(None));
    assert!(parser.has_partial_block());
    parser.feed(Bytes::from_static(b"\n"));
    assert_eq!(parser.next_block(), Ok(None));
    assert!(parser.has_partial_block());
    parser.feed(Bytes::from_static(b"\n"));
    assert!(matches!(parser.next_block(), Ok(Some(Block::Event(_)))));
    assert!(!parser.has_partial_block());
}

#[test]
fn has_partial_block_cases() {
    assert!(!run([&b""[..]]).partial);
    assert!(!run([&b"\n\n\r\n"[..]]).partial);
    assert!(!run([&b"data: a\n\n"[..]]).partial);
    // A CR that may still be followed by LF is a finished line end.
    assert!(!run([&b"data: a\n\r"[..]]).partial);
    assert!(run([&b"d"[..]]).partial);
    assert!(run([&b": c\n"[..]]).partial);
    assert!(run([&b"foo\n"[..]]).partial);
    assert!(run([&b"data: a\r"[..]]).partial);
}

// ---------------------------------------------------------------- zero copy

#[test]
fn single_line_event_in_one_chunk_is_zero_copy() {
    for chunk in [
        Bytes::from_static(b": x\n\nevent: e\nid: 7\ndata: hello\n\n"),
        Bytes::from(b": x\n\nevent: e\r\nid: 7\rdata: hello\r\n\r\n".to_vec()),
    ] {
        let mut parser = SseParser::new(SseLimits::default());
        parser.feed(chunk.clone());
        assert!(matches!(parser.next_block(), Ok(Some(Block::Comment(_)))));
        let Ok(Some(Block::Event(event))) = parser.next_block() else {
            panic!("expected an event");
        };
        assert_eq!(event.data.as_deref(), Some(&b"hello"[..]));
        for value in [&event.data, &event.event_type, &event.id] {
            assert!(is_slice_of(value.as_ref().unwrap(), &chunk), "{value:?}");
        }
    }
}

#[test]
fn comment_block_in_one_chunk_is_zero_copy() {
    let chunk = Bytes::from(b"data: a\n\n: one\n: two\n\n".to_vec());
    let mut parser = SseParser::new(SseLimits::default());
    parser.feed(chunk.clone());
    assert_eq!(parser.next_block(), Ok(Some(data(b"a"))));
    let Ok(Some(Block::Comment(raw))) = parser.next_block() else {
        panic!("expected a comment");
    };
    assert_eq!(&raw[..], b": one\n: two\n\n");
    assert!(is_slice_of(&raw, &chunk));
}

#[test]
fn unfinished_block_releases_the_old_chunk() {
    // The event spans two chunks: its data is copied out of the first one,
    // so holding the unfinished block does not pin that whole chunk.
    let first = Bytes::from(b"data: hello\n: c\n".to_vec());
    let mut parser = SseParser::new(SseLimits::default());
    parser.feed(first.clone());
    assert_eq!(parser.next_block(), Ok(None));
    parser.feed(Bytes::from_static(b"\n"));
    let Ok(Some(Block::Event(event))) = parser.next_block() else {
        panic!("expected an event");
    };
    assert_eq!(event.data.as_deref(), Some(&b"hello"[..]));
    assert!(!is_slice_of(event.data.as_ref().unwrap(), &first));

    let first = Bytes::from(b": a\n".to_vec());
    let mut parser = SseParser::new(SseLimits::default());
    parser.feed(first.clone());
    assert_eq!(parser.next_block(), Ok(None));
    parser.feed(Bytes::from_static(b": b\n\n"));
    let Ok(Some(Block::Comment(raw))) = parser.next_block() else {
        panic!("expected a comment");
    };
    assert_eq!(&raw[..], b": a\n: b\n\n");
    assert!(!is_slice_of(&raw, &first));
}

// ---------------------------------------------------------------- limits

#[test]
fn limits_default_to_8_mib() {
    let limits = SseLimits::default();
    assert_eq!(limits, SseLimits::new());
    assert_eq!(limits.line_limit(), 8 * 1024 * 1024);
    assert_eq!(limits.event_limit(), 8 * 1024 * 1024);
    let limits = limits.max_line_bytes(3).max_event_bytes(4);
    assert_eq!((limits.line_limit(), limits.event_limit()), (3, 4));
    assert_eq!(SseParser::new(limits).limits(), limits);
}

#[test]
fn line_longer_than_the_limit_is_rejected() {
    let limits = SseLimits::new().max_line_bytes(10);
    let ok = run_with([&b"data: 1234\r\n\r\n"[..]], limits);
    assert_eq!(ok.blocks, [data(b"1234")]);
    assert_eq!(ok.error, None);
    let too_long = run_with([&b"data: a\n\ndata: 12345\n\n"[..]], limits);
    assert_eq!(too_long.blocks, [data(b"a")]);
    assert_eq!(too_long.error, Some(SseError::LineTooLong { limit: 10 }));
    // The same across chunks.
    let too_long = run_with([&b"data: 12"[..], b"345", b"\n\n"], limits);
    assert_eq!(too_long.error, Some(SseError::LineTooLong { limit: 10 }));
    // Comments and unknown fields count too.
    let too_long = run_with([&b": 3456789ab\n\n"[..]], limits);
    assert_eq!(too_long.error, Some(SseError::LineTooLong { limit: 10 }));
}

#[test]
fn line_limit_applies_before_the_line_end_arrives() {
    let limits = SseLimits::new().max_line_bytes(16);
    let mut parser = SseParser::new(limits);
    let mut fed = 0;
    let error = loop {
        parser.feed(Bytes::from_static(b"x"));
        fed += 1;
        match parser.next_block() {
            Ok(None) => assert!(parser.buffered_len() <= 16),
            Ok(Some(block)) => panic!("unexpected {block:?}"),
            Err(error) => break error,
        }
    };
    assert_eq!(fed, 17);
    assert_eq!(error, SseError::LineTooLong { limit: 16 });

    // One big chunk without any line end fails at once.
    let mut parser = SseParser::new(limits);
    parser.feed(Bytes::from(vec![b'a'; 1 << 20]));
    assert_eq!(
        parser.next_block(),
        Err(SseError::LineTooLong { limit: 16 })
    );
    assert_eq!(parser.buffered_len(), 0);
}

#[test]
fn event_limit_counts_data_event_type_and_id() {
    let limits = SseLimits::new().max_event_bytes(10);
    let run = |input: &[u8]| run_with([input], limits);
    // 5 + LF + 4 = 10 bytes of data.
    assert_eq!(
        run(b"data: 12345\ndata: 1234\n\n").blocks,
        [data(b"12345\n1234")]
    );
    let too_large = Some(SseError::EventTooLarge { limit: 10 });
    assert_eq!(run(b"data: 12345\ndata: 12345\n\n").error, too_large);
    assert_eq!(
        run(b"event: abcde\nid: 12345\ndata: x\n\n").error,
        too_large
    );
    assert_eq!(run(b"event: abcde\nid: 12345\n\n").error, None);
    assert_eq!(run(b"id: 1234567890a\n\n").error, too_large);
    // A later field replaces an earlier one rather than adding to it.
    assert_eq!(run(b"id: 1234567890\nid: 1234567890\n\n").error, None);
    // Many events each under the limit are fine.
    assert_eq!(run(&b"data: 1234567890\n\n".repeat(50)).blocks.len(), 50);
    // Empty data lines count their LF.
    assert_eq!(run(&b"data\n".repeat(11)).error, None);
    assert_eq!(run(&b"data\n".repeat(12)).error, too_large);
}

#[test]
fn event_limit_counts_comment_only_blocks() {
    let limits = SseLimits::new().max_event_bytes(8);
    // ": a\n" is 4 bytes: two fit, three do not.
    assert_eq!(
        run_with([&b": a\n: a\n\n"[..]], limits).blocks,
        [comment(b": a\n: a\n\n")]
    );
    assert_eq!(
        run_with([&b": a\n: a\n: a\n\n"[..]], limits).error,
        Some(SseError::EventTooLarge { limit: 8 })
    );
    // Once the block is an event its comments no longer count.
    assert_eq!(
        run_with([&b": a\ndata\n: a\n: a\n: a\n\n"[..]], limits).blocks,
        [data(b"")]
    );
}

#[test]
fn error_is_sticky_and_later_input_is_dropped() {
    let mut parser = SseParser::new(SseLimits::new().max_line_bytes(4));
    parser.feed(Bytes::from_static(b"data: long\n\n"));
    let error = SseError::LineTooLong { limit: 4 };
    assert_eq!(parser.next_block(), Err(error.clone()));
    parser.feed(Bytes::from_static(b"\n\nid\n\n"));
    assert_eq!(parser.buffered_len(), 0);
    assert_eq!(parser.next_block(), Err(error.clone()));
    assert_eq!(parser.next_block(), Err(error));
    assert!(!parser.has_partial_block());
}

#[test]
fn error_messages_name_the_setting_to_raise() {
    let line = SseError::LineTooLong { limit: 5 }.to_string();
    assert!(
        line.contains("5 bytes") && line.contains("max_line_bytes"),
        "{line}"
    );
    let event = SseError::EventTooLarge { limit: 6 }.to_string();
    assert!(
        event.contains("6 bytes") && event.contains("max_event_bytes"),
        "{event}"
    );
    let encode = EncodeError::ForbiddenByte { field: "id" }.to_string();
    assert!(encode.contains("id") && encode.contains("CR"), "{encode}");
}

// ---------------------------------------------------------------- encoder

fn encode(block: &OutgoingEvent<'_>) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_event(block, &mut out).unwrap();
    out.to_vec()
}

#[test]
fn encode_event_writes_id_event_retry_then_data() {
    let block = OutgoingEvent {
        id: Some(b"7"),
        event_type: Some(b"message"),
        data: Some(b"{}"),
        retry: Some(3000),
    };
    assert_eq!(
        encode(&block),
        b"id: 7\nevent: message\nretry: 3000\ndata: {}\n\n"
    );
    assert_eq!(encode(&OutgoingEvent::new().with_retry(0)), b"retry: 0\n\n");
    assert_eq!(
        encode(&OutgoingEvent::new().with_retry(u64::MAX)),
        b"retry: 18446744073709551615\n\n"
    );
    assert_eq!(
        encode(&OutgoingEvent::new().with_event_type(b"e")),
        b"event: e\n\n"
    );
}

#[test]
fn encode_event_empty_values_and_leading_spaces() {
    let block = OutgoingEvent::new()
        .with_id(b"")
        .with_event_type(b" x")
        .with_data(b" d");
    let encoded = encode(&block);
    assert_eq!(encoded, b"id:\nevent:  x\ndata:  d\n\n");
    assert_eq!(
        blocks(&encoded),
        [Block::Event(SseEvent {
            id: b(b""),
            event_type: b(b" x"),
            data: b(b" d"),
            retry: None,
        })]
    );
}

#[test]
fn encode_event_data_none_empty_and_multi_line() {
    assert_eq!(encode(&OutgoingEvent::new().with_id(b"1")), b"id: 1\n\n");
    assert_eq!(encode(&OutgoingEvent::new().with_data(b"")), b"data:\n\n");
    assert_eq!(
        encode(&OutgoingEvent::new().with_data(b"a\nb\n")),
        b"data: a\ndata: b\ndata:\n\n"
    );
    // CRLF and lone CR split lines too.
    assert_eq!(
        encode(&OutgoingEvent::new().with_data(b"a\r\nb\rc\n\nd")),
        b"data: a\ndata: b\ndata: c\ndata:\ndata: d\n\n"
    );
    assert_eq!(blocks(b"data: a\ndata: b\ndata:\n\n"), [data(b"a\nb\n")]);
}

#[test]
fn encode_event_with_no_fields_writes_nothing() {
    let mut out = BytesMut::from(&b"before"[..]);
    encode_event(&OutgoingEvent::new(), &mut out).unwrap();
    assert_eq!(&out[..], b"before");
    assert!(OutgoingEvent::default().is_empty());
}

#[test]
fn encode_event_rejects_forbidden_bytes_and_leaves_out_unchanged() {
    for bad in [&b"a\rb"[..], b"a\nb", b"a\0b", b"\r", b"\n"] {
        let mut out = BytesMut::from(&b"before"[..]);
        assert_eq!(
            encode_event(&OutgoingEvent::new().with_id(bad).with_data(b"x"), &mut out),
            Err(EncodeError::ForbiddenByte { field: "id" })
        );
        assert_eq!(
            encode_event(
                &OutgoingEvent::new().with_event_type(bad).with_data(b"x"),
                &mut out
            ),
            Err(EncodeError::ForbiddenByte { field: "event" })
        );
        assert_eq!(&out[..], b"before");
    }
    // Data may hold NUL.
    assert_eq!(
        encode(&OutgoingEvent::new().with_data(b"a\0b")),
        b"data: a\0b\n\n"
    );
}

#[test]
fn encode_comment_writes_a_comment_only_block() {
    let mut out = BytesMut::new();
    encode_comment(b"keep-alive", &mut out).unwrap();
    encode_comment(b"", &mut out).unwrap();
    encode_comment(b" spaced", &mut out).unwrap();
    assert_eq!(&out[..], b": keep-alive\n\n:\n\n:  spaced\n\n");
    assert_eq!(
        blocks(&out),
        [
            comment(b": keep-alive\n\n"),
            comment(b":\n\n"),
            comment(b":  spaced\n\n")
        ]
    );
    for bad in [&b"a\rb"[..], b"a\nb", b"\0"] {
        assert_eq!(
            encode_comment(bad, &mut out),
            Err(EncodeError::ForbiddenByte { field: "comment" })
        );
    }
    assert_eq!(out.len(), 28);
}

#[test]
fn parsed_event_re_encodes_with_a_new_id() {
    let parsed = blocks(b"event: e\r\nid: old\r\ndata: a\r\ndata: b\r\n\r\n");
    let [Block::Event(event)] = &parsed[..] else {
        panic!("expected one event");
    };
    let block = OutgoingEvent::from(event).with_id(b"new");
    assert_eq!(encode(&block), b"id: new\nevent: e\ndata: a\ndata: b\n\n");
}

// ---------------------------------------------------------------- reference model

/// A deliberately plain implementation of the same rules over the whole
/// input at once, to check the incremental parser against.
fn reference(input: &[u8], limits: SseLimits) -> Outcome {
    #[derive(Default)]
    struct RawBlock {
        started: bool,
        data: Option<Vec<u8>>,
        event_type: Option<Vec<u8>>,
        id: Option<Vec<u8>>,
        retry: Option<u64>,
        comments: Vec<u8>,
    }
    let failed = |blocks: Vec<Block>, error: SseError| Outcome {
        blocks,
        error: Some(error),
        partial: false,
    };
    let too_long = SseError::LineTooLong {
        limit: limits.line_limit(),
    };
    let too_large = SseError::EventTooLarge {
        limit: limits.event_limit(),
    };
    let len = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, Vec::len);

    // A proper prefix of the BOM is undecided until more bytes come: the
    // parser holds it, as a partial block, before any limit applies to it.
    if !input.is_empty() && input.len() < BOM.len() && BOM.starts_with(input) {
        return Outcome {
            blocks: Vec::new(),
            error: None,
            partial: true,
        };
    }
    let input = input.strip_prefix(BOM).unwrap_or(input);
    let mut blocks = Vec::new();
    let mut block = RawBlock::default();
    let mut start = 0;
    loop {
        let rest = &input[start..];
        let Some(end) = rest.iter().position(|&c| c == b'\n' || c == b'\r') else {
            if rest.len() > limits.line_limit() {
                return failed(blocks, too_long);
            }
            return Outcome {
                blocks,
                error: None,
                partial: block.started || !rest.is_empty(),
            };
        };
        let line = &rest[..end];
        start += end
            + if rest[end..].starts_with(b"\r\n") {
                2
            } else {
                1
            };
        if line.len() > limits.line_limit() {
            return failed(blocks, too_long);
        }
        if line.is_empty() {
            let block = std::mem::take(&mut block);
            let event = SseEvent {
                event_type: block.event_type.map(Bytes::from),
                data: block.data.map(Bytes::from),
                id: block.id.map(Bytes::from),
                retry: block.retry,
            };
            if event != empty_event() {
                blocks.push(Block::Event(event));
            } else if !block.comments.is_empty() {
                blocks.push(Block::Comment(Bytes::from(
                    [block.comments, vec![b'\n']].concat(),
                )));
            }
            continue;
        }
        block.started = true;
        let is_event = block.data.is_some()
            || block.event_type.is_some()
            || block.id.is_some()
            || block.retry.is_some();
        if line[0] == b':' {
            if !is_event {
                block.comments.extend_from_slice(line);
                block.comments.push(b'\n');
                if block.comments.len() > limits.event_limit() {
                    return failed(blocks, too_large);
                }
            }
            continue;
        }
        let (name, value) = match line.iter().position(|&c| c == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                let data = match block.data.take() {
                    None => value.to_vec(),
                    Some(old) => [old, b"\n".to_vec(), value.to_vec()].concat(),
                };
                if data.len() + len(&block.event_type) + len(&block.id) > limits.event_limit() {
                    return failed(blocks, too_large);
                }
                block.data = Some(data);
            }
            b"event" => {
                if len(&block.data) + value.len() + len(&block.id) > limits.event_limit() {
                    return failed(blocks, too_large);
                }
                block.event_type = Some(value.to_vec());
            }
            b"id" if !value.contains(&0) => {
                if len(&block.data) + len(&block.event_type) + value.len() > limits.event_limit() {
                    return failed(blocks, too_large);
                }
                block.id = Some(value.to_vec());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                match std::str::from_utf8(value).unwrap().parse::<u64>() {
                    Ok(retry) => block.retry = Some(retry),
                    Err(_) => continue,
                }
            }
            _ => continue,
        }
        block.comments.clear();
    }
}

#[test]
fn reference_model_agrees_on_the_table_cases() {
    let input: &[u8] = b"\xEF\xBB\xBF: hi\r\n\r\nevent: e\r\nid: 1\rdata: a\r\ndata:  b\n\
                         retry: 10\r\n\r\n:x\nfoo\n:y\n\ndata\r\r\nid: a\0\n\nid: 2\n";
    assert_eq!(run([input]), reference(input, SseLimits::default()));
}

#[test]
fn a_bom_prefix_alone_is_held_whatever_the_limits() {
    // The parser cannot tell yet whether a BOM or line content has begun.
    let limits = SseLimits::new().max_line_bytes(0).max_event_bytes(0);
    let input: &[u8] = &[0xEF, 0xBB];
    let held = Outcome {
        blocks: Vec::new(),
        error: None,
        partial: true,
    };
    assert_eq!(run_with([input], limits), held);
    assert_eq!(reference(input, limits), held);
}

// ---------------------------------------------------------------- properties

/// Splits `input` into chunks whose sizes cycle through `sizes`.
fn split<'a>(input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = input;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// Feeds all chunks first, then drains.
fn run_fed_at_once(chunks: &[&[u8]], limits: SseLimits) -> Outcome {
    let mut parser = SseParser::new(limits);
    for chunk in chunks {
        parser.feed(Bytes::copy_from_slice(chunk));
    }
    let mut blocks = Vec::new();
    loop {
        match parser.next_block() {
            Ok(Some(block)) => blocks.push(block),
            Ok(None) => break,
            Err(error) => {
                return Outcome {
                    blocks,
                    error: Some(error),
                    partial: parser.has_partial_block(),
                };
            }
        }
    }
    Outcome {
        blocks,
        error: None,
        partial: parser.has_partial_block(),
    }
}

/// Bytes other than CR, LF and NUL, leaning towards the interesting ones.
fn safe_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        2 => Just(b' '),
        1 => Just(b':'),
        1 => Just(0xEF),
        6 => any::<u8>().prop_map(|c| if matches!(c, b'\r' | b'\n' | 0) { b'x' } else { c }),
    ]
}

/// Data bytes: anything but CR, with plenty of LF.
fn data_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        2 => Just(b'\n'),
        1 => Just(b' '),
        6 => any::<u8>().prop_map(|c| if c == b'\r' { b'\n' } else { c }),
    ]
}

#[derive(Clone, Debug)]
enum Item {
    Event(SseEvent),
    Comment(Vec<u8>),
}

fn item() -> impl Strategy<Value = Item> {
    let value =
        || prop::option::of(prop::collection::vec(safe_byte(), 0..10).prop_map(Bytes::from));
    let event = (
        value(),
        prop::option::of(prop::collection::vec(data_byte(), 0..24).prop_map(Bytes::from)),
        value(),
        prop::option::of(prop_oneof![0u64..10_000, any::<u64>()]),
    )
        .prop_map(|(event_type, data, id, retry)| {
            Item::Event(SseEvent {
                event_type,
                data,
                id,
                retry,
            })
        });
    prop_oneof![
        4 => event,
        1 => prop::collection::vec(safe_byte(), 0..10).prop_map(Item::Comment),
    ]
}

/// Input that hits the parser's special cases often.
fn sse_like_input() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"data".to_vec()),
        Just(b"event".to_vec()),
        Just(b"id".to_vec()),
        Just(b"retry".to_vec()),
        Just(b":".to_vec()),
        Just(b": ".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(vec![0]),
        Just(BOM.to_vec()),
        Just(vec![0xEF, 0xBB]),
        Just(b"42".to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
    ];
    prop_oneof![
        4 => prop::collection::vec(token, 0..60).prop_map(|tokens| tokens.concat()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        1 => Just(vec![1]),
        4 => prop::collection::vec(1usize..16, 1..8),
    ]
}

proptest! {
    /// Encoding events and comments, with any line end style, an optional
    /// BOM and any chunking, parses back to exactly the same blocks.
    #[test]
    fn prop_encoded_events_round_trip(
        items in prop::collection::vec(item(), 0..12),
        line_end in prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..])],
        bom in any::<bool>(),
        sizes in chunk_sizes(),
        drain_each in any::<bool>(),
    ) {
        let mut encoded = BytesMut::new();
        let mut expected = Vec::new();
        for item in &items {
            let start = encoded.len();
            match item {
                Item::Event(event) => {
                    encode_event(&OutgoingEvent::from(event), &mut encoded).unwrap();
                    if *event != empty_event() {
                        expected.push(Block::Event(event.clone()));
                    }
                }
                Item::Comment(text) => {
                    encode_comment(text, &mut encoded).unwrap();
                    expected.push(Block::Comment(Bytes::copy_from_slice(&encoded[start..])));
                }
            }
        }
        let mut input = if bom { BOM.to_vec() } else { Vec::new() };
        for &c in encoded.iter() {
            if c == b'\n' {
                input.extend_from_slice(line_end);
            } else {
                input.push(c);
            }
        }
        let chunks = split(&input, &sizes);
        let outcome = if drain_each {
            run_with(&chunks, SseLimits::default())
        } else {
            run_fed_at_once(&chunks, SseLimits::default())
        };
        prop_assert_eq!(outcome.error, None);
        prop_assert_eq!(outcome.blocks, expected);
        prop_assert!(!outcome.partial);
    }

    /// Any input, split any way, never panics, gives the same result as fed
    /// whole, and agrees with the reference model.
    #[test]
    fn prop_chunking_invariance(
        input in sse_like_input(),
        sizes in chunk_sizes(),
        drain_each in any::<bool>(),
    ) {
        let whole = run([&input]);
        let chunks = split(&input, &sizes);
        let chunked = if drain_each {
            run_with(&chunks, SseLimits::default())
        } else {
            run_fed_at_once(&chunks, SseLimits::default())
        };
        prop_assert_eq!(&chunked, &whole);
        prop_assert_eq!(&run(input.chunks(1)), &whole);
        prop_assert_eq!(&reference(&input, SseLimits::default()), &whole);
    }

    /// With small limits, input either parses or fails exactly where the
    /// reference model says, and the parser never holds more than the
    /// limits allow.
    #[test]
    fn prop_limits_bound_memory(
        input in sse_like_input(),
        line_limit in 0usize..40,
        event_limit in 0usize..60,
        sizes in chunk_sizes(),
    ) {
        let limits = SseLimits::new().max_line_bytes(line_limit).max_event_bytes(event_limit);
        let mut parser = SseParser::new(limits);
        let mut blocks = Vec::new();
        let mut error = None;
        'feed: for chunk in split(&input, &sizes) {
            parser.feed(Bytes::copy_from_slice(chunk));
            loop {
                match parser.next_block() {
                    Ok(Some(block)) => blocks.push(block),
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e);
                        break 'feed;
                    }
                }
            }
            // The BOM check may hold up to two bytes beyond the limits.
            prop_assert!(
                parser.buffered_len() <= line_limit + event_limit + 2,
                "held {} bytes", parser.buffered_len()
            );
        }
        if let Some(error) = &error {
            prop_assert_eq!(parser.next_block(), Err(error.clone()));
            prop_assert_eq!(parser.buffered_len(), 0);
        }
        let outcome = Outcome { blocks, error, partial: parser.has_partial_block() };
        prop_assert_eq!(&outcome, &reference(&input, limits));
        prop_assert_eq!(&outcome, &run_with([&input], limits));
    }
}
