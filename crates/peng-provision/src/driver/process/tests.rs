//! Unit tests of the pieces that need no process: parsing, backoff, line splitting.

use super::records::{parse_stat, Record};
use super::supervisor::{read_lines, MAX_LINE};

#[test]
fn stat_fields_are_counted_from_the_last_parenthesis() {
    let text = "4242 (sh (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    let stat = parse_stat(text).expect("stat");
    assert_eq!(stat.state, 'S');
    assert_eq!(stat.ppid, 1);
    assert_eq!(stat.pgrp, 4242);
    assert_eq!(stat.cpu_ticks, 3);
    assert_eq!(stat.start_time, 987654);
    assert_eq!(stat.rss_pages, 200);
    assert_eq!(parse_stat("12 (x) S 1"), None);
}

#[test]
fn our_own_stat_parses() {
    let stat = super::records::proc_stat(std::process::id()).expect("own stat");
    assert!(stat.start_time > 0);
}

#[test]
fn records_round_trip() {
    let r = Record {
        pid: 1234,
        start_time: 55,
        service: "books/shelf".into(),
        stage: "production".into(),
        index: 1,
    };
    assert_eq!(Record::parse(&r.render()), Some(r));
    assert_eq!(
        Record::parse("pid=1\nstart_time=1\nservice=a/b\nstage=x\nindex=0"),
        None
    );
    assert_eq!(Record::parse("garbage"), None);
}

async fn lines(input: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    read_lines(input, |l| out.push(l)).await;
    out
}

#[tokio::test]
async fn lines_are_split_and_capped() {
    assert_eq!(lines(b"a\nb\r\n\nlast").await, ["a", "b", "", "last"]);
    assert_eq!(lines(b"").await, Vec::<String>::new());
    let long = vec![b'x'; MAX_LINE * 2 + 10];
    let mut input = long.clone();
    input.extend_from_slice(b"\nnext\n");
    let got = lines(&input).await;
    let sizes: Vec<usize> = got.iter().map(|l| l.len()).collect();
    assert_eq!(sizes, [MAX_LINE, MAX_LINE, 10, 4]);
    let mut exact = vec![b'y'; MAX_LINE];
    exact.extend_from_slice(b"\nz\n");
    let sizes: Vec<usize> = lines(&exact).await.iter().map(|l| l.len()).collect();
    assert_eq!(sizes, [MAX_LINE, 1]);
    assert_eq!(lines(b"\xff\xfeok\n").await, ["\u{fffd}\u{fffd}ok"]);
}
