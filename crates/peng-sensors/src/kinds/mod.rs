//! The sensor kinds, one folder each. A kind is added by its folder and one line here; the
//! order of the lines is the order messages and the JSON Schema list the kinds in.

kinds! {
    http => Http,
    tcp => Tcp,
    sql => Sql,
    log => Log,
}
