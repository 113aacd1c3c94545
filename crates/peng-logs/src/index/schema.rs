//! The index layout, version 1. Changing a field here is a format change: bump
//! [`SCHEMA_VERSION`] and keep a way to read the old one.

use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, NumericOptions, Schema, TextFieldIndexing, FAST,
    INDEXED, STORED, STRING, TEXT,
};
use tantivy::tokenizer::{LowerCaser, RawTokenizer, RemoveLongFilter, TextAnalyzer};

/// Written to `peng-logs-schema` in the index directory.
pub const SCHEMA_VERSION: u32 = 1;

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
}

/// Names a query may use for columns; everything else is an additional field.
pub const RAW_COLUMNS: &[&str] = &["team", "service", "stage", "instance", "source", "host"];

pub fn build() -> (Schema, Fields) {
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
    };
    (b.build(), f)
}

pub fn keyword_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(RemoveLongFilter::limit(256))
        .filter(LowerCaser)
        .build()
}
