//! The index layouts. Changing a field here is a format change: add a version and keep a way
//! to read the old one.
//!
//! - **Version 1** (one index in the store's directory, up to the store layout 2): every column
//!   indexed, stored and partly fast; additional fields in a JSON column that is indexed, stored
//!   and fast. Still read (and pruned by retention), never written.
//! - **Version 2** (each time partition): only what a query or a hit needs. `timestamp`,
//!   `received` and `seq` are fast columns only (range filters, order, the tail cursor);
//!   names and words are indexed without field norms (searches never score); additional fields
//!   are indexed as whole lower-cased values, and their numbers and booleans also go to a fast
//!   JSON column for ranges; a hit is read from one stored column holding the record in the
//!   WAL's encoding, in zstd-compressed blocks.

use tantivy::schema::{
    BytesOptions, Field, IndexRecordOption, JsonObjectOptions, NumericOptions, Schema,
    TextFieldIndexing, TextOptions, FAST, INDEXED, STORED, STRING, TEXT,
};
use tantivy::tokenizer::{LowerCaser, RawTokenizer, RemoveLongFilter, TextAnalyzer};

/// The index layout of the one index the store held before time partitions.
pub const SCHEMA_V1: u32 = 1;
/// The index layout of each time partition.
pub const SCHEMA_V2: u32 = 2;

/// Tokenizer of additional-field strings: the whole value as one lower-cased term (values
/// over 256 bytes are stored but not searchable by value).
pub const KEYWORD_TOKENIZER: &str = "peng_keyword";

/// The columns of the index.
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    /// Nanoseconds since the epoch, when the message happened.
    pub timestamp: Field,
    /// Nanoseconds since the epoch, when peng received it.
    pub received: Field,
    /// Order in which records were written; the `tail` cursor.
    pub seq: Field,
    pub team: Field,
    pub service: Field,
    pub stage: Field,
    pub instance: Field,
    pub source: Field,
    pub host: Field,
    pub level: Field,
    pub message: Field,
    pub full_message: Field,
    /// Additional fields as a JSON object.
    pub fields: Field,
    /// Names of the optional columns and additional fields a record has (`_exists_`).
    pub present: Field,
    /// Version 2: additional fields' numbers and booleans, fast, for ranges.
    pub nums: Option<Field>,
    /// Version 2: the whole record, as the WAL encodes it; what a hit is read from.
    pub record: Option<Field>,
}

/// Names a query may use for columns; everything else is an additional field.
pub const RAW_COLUMNS: &[&str] = &["team", "service", "stage", "instance", "source", "host"];

/// The layout of version 1.
pub fn v1() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let num = NumericOptions::default()
        .set_indexed()
        .set_fast()
        .set_stored();
    let timestamp = b.add_i64_field("timestamp", num.clone());
    let received = b.add_i64_field("received", num.clone());
    let seq = b.add_u64_field("seq", FAST);
    let team = b.add_text_field("team", STRING | STORED);
    let service = b.add_text_field("service", STRING | STORED);
    let stage = b.add_text_field("stage", STRING | STORED);
    let instance = b.add_text_field("instance", STRING | STORED);
    let source = b.add_text_field("source", STRING | STORED);
    let host = b.add_text_field("host", STRING | STORED);
    let level = b.add_u64_field("level", num | INDEXED);
    let message = b.add_text_field("message", TEXT | STORED);
    let full_message = b.add_text_field("full_message", TEXT | STORED);
    let json = JsonObjectOptions::from(STORED)
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(KEYWORD_TOKENIZER)
                .set_index_option(IndexRecordOption::Basic),
        )
        .set_expand_dots_enabled()
        .set_fast(Some(KEYWORD_TOKENIZER));
    let fields = b.add_json_field("fields", json);
    let present = b.add_text_field("present", STRING);
    let f = Fields {
        timestamp,
        received,
        seq,
        team,
        service,
        stage,
        instance,
        source,
        host,
        level,
        message,
        full_message,
        fields,
        present,
        nums: None,
        record: None,
    };
    (b.build(), f)
}

/// The layout of version 2.
pub fn v2() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fast_i64 = NumericOptions::default().set_fast();
    let timestamp = b.add_i64_field("timestamp", fast_i64.clone());
    let received = b.add_i64_field("received", fast_i64);
    let seq = b.add_u64_field("seq", FAST);
    let raw = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_fieldnorms(false)
            .set_index_option(IndexRecordOption::Basic),
    );
    let team = b.add_text_field("team", raw.clone());
    let service = b.add_text_field("service", raw.clone());
    let stage = b.add_text_field("stage", raw.clone());
    let instance = b.add_text_field("instance", raw.clone());
    let source = b.add_text_field("source", raw.clone());
    let host = b.add_text_field("host", raw.clone());
    let level = b.add_u64_field("level", INDEXED);
    // positions, for phrases
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_fieldnorms(false)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let message = b.add_text_field("message", words.clone());
    let full_message = b.add_text_field("full_message", words);
    let json = JsonObjectOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(KEYWORD_TOKENIZER)
                .set_fieldnorms(false)
                .set_index_option(IndexRecordOption::Basic),
        )
        .set_expand_dots_enabled();
    let fields = b.add_json_field("fields", json);
    let nums = b.add_json_field(
        "nums",
        JsonObjectOptions::default()
            .set_fast(None)
            .set_expand_dots_enabled(),
    );
    let present = b.add_text_field("present", raw);
    let record = b.add_bytes_field("record", BytesOptions::default().set_stored());
    let f = Fields {
        timestamp,
        received,
        seq,
        team,
        service,
        stage,
        instance,
        source,
        host,
        level,
        message,
        full_message,
        fields,
        present,
        nums: Some(nums),
        record: Some(record),
    };
    (b.build(), f)
}

pub fn keyword_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(RemoveLongFilter::limit(256))
        .filter(LowerCaser)
        .build()
}
