//! The table, defined once: the store's `CREATE TABLE` and its `INSERT` are written from
//! these lists, and the CloudFormation template's `AWS::Cassandra::Table` is checked against
//! them (`store-cql/tests/template_schema.rs`), so the two cannot drift.

/// The table's name; the keyspace is configured.
pub const TABLE: &str = "day_fragments";

/// A column: its name and CQL type.
pub type Column = (&'static str, &'static str);

/// The partition key: a series' month (`yyyymm`) bounds a partition's size.
pub const PARTITION_KEY: &[Column] = &[("series", "text"), ("month", "int")];

/// The clustering columns, all ascending: with the partition key, a fragment's identity
/// (`(series, day, version, source, line)`, the month being the day's).
pub const CLUSTERING: &[Column] = &[
    ("day", "date"),
    ("version", "bigint"),
    ("source", "text"),
    ("line", "bigint"),
];

/// The other columns: the fragment as a one-fragment envelope (`slots`), and its total,
/// interval, unit and quality for tools that cannot read the envelope.
pub const REGULAR: &[Column] = &[
    ("total", "bigint"),
    ("slots", "blob"),
    ("interval_minutes", "int"),
    ("unit", "text"),
    ("quality", "int"),
];

/// Every column in table order: the key's, then the others.
pub fn columns() -> impl Iterator<Item = Column> {
    PARTITION_KEY
        .iter()
        .chain(CLUSTERING)
        .chain(REGULAR)
        .copied()
}

fn names(columns: &[Column]) -> String {
    columns.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
}

/// `CREATE TABLE IF NOT EXISTS` in `keyspace`.
pub fn create_table(keyspace: &str) -> String {
    let columns: Vec<String> = columns().map(|(n, t)| format!("{n} {t}")).collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {keyspace}.{TABLE} ({}, PRIMARY KEY (({}), {}))",
        columns.join(", "),
        names(PARTITION_KEY),
        names(CLUSTERING)
    )
}

/// The upsert of one row, every column bound in table order.
pub fn insert(keyspace: &str) -> String {
    let names: Vec<&str> = columns().map(|c| c.0).collect();
    let marks = vec!["?"; names.len()].join(", ");
    format!(
        "INSERT INTO {keyspace}.{TABLE} ({}) VALUES ({marks})",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statements_name_the_brief_s_key() {
        assert_eq!(
            create_table("ks"),
            "CREATE TABLE IF NOT EXISTS ks.day_fragments (series text, month int, day date, \
             version bigint, source text, line bigint, total bigint, slots blob, \
             interval_minutes int, unit text, quality int, \
             PRIMARY KEY ((series, month), day, version, source, line))"
        );
        assert_eq!(
            insert("ks"),
            "INSERT INTO ks.day_fragments (series, month, day, version, source, line, total, \
             slots, interval_minutes, unit, quality) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
    }
}
