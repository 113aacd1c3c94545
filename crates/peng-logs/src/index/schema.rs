//! The index layouts. Changing a field here is a format change: add a version and keep a way
//! to read the old one.
//!
//! - **Version 1** (one index in the store's directory, up to the store layout 2): every column
//!   indexed, stored and partly fast; additional fields in a JSON column that is indexed, stored
//!   and fast. Read only to migrate it.
//! - **Version 2** (each time partition in `v2/`): the columns of [`v2`] with FST term
//!   dictionaries. Read only to migrate it.
//! - **Version 3** (each time partition in `v3/`): the columns of [`v2`], with sstable term
//!   dictionaries (compact, and cheap to build from the unique ids logs are full of); only what
//!   a query or a hit needs. `timestamp`,
//!   `received` and `seq` are fast columns only (range filters, order, the tail cursor);
//!   names and words are indexed without field norms (searches never score); additional fields
//!   are indexed as whole lower-cased values, and their numbers and booleans also go to a fast
//!   JSON column for ranges; a hit is read from one stored column holding the record in the
//!   WAL's encoding (its two times left as 0: they are read from the fast columns), in
//!   zstd-compressed blocks.

use tantivy::schema::{
    BytesOptions, Field, IndexRecordOption, JsonObjectOptions, NumericOptions, Schema,
    TextFieldIndexing, TextOptions, FAST, INDEXED, STORED, STRING, TEXT,
};
use tantivy::tokenizer::{LowerCaser, RawTokenizer, RemoveLongFilter, TextAnalyzer};

/// The index layout of the one index the store held before time partitions.
pub const SCHEMA_V1: u32 = 1;
/// The index layout of the time partitions before sstable term dictionaries.
pub const SCHEMA_V2: u32 = 2;
/// The index layout of each time partition: the columns of [`v2`], sstable dictionaries.
pub const SCHEMA_V3: u32 = 3;

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

impl Fields {
    /// The columns of a layout, by name; the optional ones are those of layout 2.
    fn of(schema: &Schema) -> Fields {
        let get = |name: &str| schema.get_field(name).ok();
        let must = |name: &str| match get(name) {
            Some(f) => f,
            // both layouts are built in this file with every one of these names
            None => unreachable!("the log schema has no column {name}"),
        };
        Fields {
            timestamp: must("timestamp"),
            received: must("received"),
            seq: must("seq"),
            team: must("team"),
            service: must("service"),
            stage: must("stage"),
            instance: must("instance"),
            source: must("source"),
            host: must("host"),
            level: must("level"),
            message: must("message"),
            full_message: must("full_message"),
            fields: must("fields"),
            present: must("present"),
            nums: get("nums"),
            record: get("record"),
        }
    }
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
    b.add_i64_field("timestamp", num.clone());
    b.add_i64_field("received", num.clone());
    b.add_u64_field("seq", FAST);
    b.add_text_field("team", STRING | STORED);
    b.add_text_field("service", STRING | STORED);
    b.add_text_field("stage", STRING | STORED);
    b.add_text_field("instance", STRING | STORED);
    b.add_text_field("source", STRING | STORED);
    b.add_text_field("host", STRING | STORED);
    b.add_u64_field("level", num | INDEXED);
    b.add_text_field("message", TEXT | STORED);
    b.add_text_field("full_message", TEXT | STORED);
    let json = JsonObjectOptions::from(STORED)
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(KEYWORD_TOKENIZER)
                .set_index_option(IndexRecordOption::Basic),
        )
        .set_expand_dots_enabled()
        .set_fast(Some(KEYWORD_TOKENIZER));
    b.add_json_field("fields", json);
    b.add_text_field("present", STRING);
    let schema = b.build();
    let f = Fields::of(&schema);
    (schema, f)
}

/// The columns of layouts 2 and 3.
pub fn v2() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fast_i64 = NumericOptions::default().set_fast();
    b.add_i64_field("timestamp", fast_i64.clone());
    b.add_i64_field("received", fast_i64);
    b.add_u64_field("seq", FAST);
    let raw = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_fieldnorms(false)
            .set_index_option(IndexRecordOption::Basic),
    );
    b.add_text_field("team", raw.clone());
    b.add_text_field("service", raw.clone());
    b.add_text_field("stage", raw.clone());
    b.add_text_field("instance", raw.clone());
    b.add_text_field("source", raw.clone());
    b.add_text_field("host", raw.clone());
    b.add_u64_field("level", INDEXED);
    // positions, for phrases
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_fieldnorms(false)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    b.add_text_field("message", words.clone());
    b.add_text_field("full_message", words);
    let json = JsonObjectOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(KEYWORD_TOKENIZER)
                .set_fieldnorms(false)
                .set_index_option(IndexRecordOption::Basic),
        )
        .set_expand_dots_enabled();
    b.add_json_field("fields", json);
    b.add_json_field(
        "nums",
        JsonObjectOptions::default()
            .set_fast(None)
            .set_expand_dots_enabled(),
    );
    b.add_text_field("present", raw);
    b.add_bytes_field("record", BytesOptions::default().set_stored());
    let schema = b.build();
    let f = Fields::of(&schema);
    (schema, f)
}

pub fn keyword_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(RemoveLongFilter::limit(256))
        .filter(LowerCaser)
        .build()
}
