//! The tables, defined once: the store's `CREATE TABLE` and `INSERT` statements are written
//! from these definitions, and the CloudFormation template's `AWS::Cassandra::Table`s are
//! checked against them (`store-cql/tests/template_schema.rs`), so the two cannot drift.

/// A column: its name and CQL type.
pub type Column = (&'static str, &'static str);

/// A table: its name and columns; clustering columns are all ascending.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub partition_key: &'static [Column],
    pub clustering: &'static [Column],
    pub regular: &'static [Column],
}

/// The fragments: one row per fragment, a series' month (`yyyymm`) per partition, which
/// bounds a partition's size; the clustering columns with the partition key are a fragment's
/// identity (`(series, day, version, source, line)`, the month being the day's). `slots` is
/// the fragment as a one-fragment envelope; total, interval, unit and quality are there for
/// tools that cannot read the envelope.
pub const FRAGMENTS: Table = Table {
    name: "day_fragments",
    partition_key: &[("series", "text"), ("month", "int")],
    clustering: &[
        ("day", "date"),
        ("version", "bigint"),
        ("source", "text"),
        ("line", "bigint"),
    ],
    regular: &[
        ("total", "bigint"),
        ("slots", "blob"),
        ("interval_minutes", "int"),
        ("unit", "text"),
        ("quality", "int"),
    ],
};

/// The series ids, for finding a meter by prefix without scanning the fragments: a partition
/// per first character (`initial`), ids sorted within it, so a prefix is one range read of
/// one partition. Written once per series per process (the store remembers what it wrote).
pub const SERIES: Table = Table {
    name: "series_index",
    partition_key: &[("initial", "text")],
    clustering: &[("series", "text")],
    regular: &[],
};

/// Every table, in creation order.
pub const TABLES: [Table; 2] = [FRAGMENTS, SERIES];

/// The fragments table's name; the keyspace is configured.
pub const TABLE: &str = FRAGMENTS.name;

fn names(columns: &[Column]) -> String {
    columns.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
}

impl Table {
    /// Every column in table order: the key's, then the others.
    pub fn columns(&self) -> impl Iterator<Item = Column> + '_ {
        self.partition_key
            .iter()
            .chain(self.clustering)
            .chain(self.regular)
            .copied()
    }

    /// `CREATE TABLE IF NOT EXISTS` in `keyspace`.
    pub fn create(&self, keyspace: &str) -> String {
        let columns: Vec<String> = self.columns().map(|(n, t)| format!("{n} {t}")).collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.{} ({}, PRIMARY KEY (({}), {}))",
            self.name,
            columns.join(", "),
            names(self.partition_key),
            names(self.clustering)
        )
    }

    /// The upsert of one row, every column bound in table order.
    pub fn insert(&self, keyspace: &str) -> String {
        let names: Vec<&str> = self.columns().map(|c| c.0).collect();
        let marks = vec!["?"; names.len()].join(", ");
        format!(
            "INSERT INTO {keyspace}.{} ({}) VALUES ({marks})",
            self.name,
            names.join(", ")
        )
    }
}

/// The `initial` of a series id in [`SERIES`].
pub fn initial(series: &str) -> &str {
    series.get(..1).unwrap_or("")
}

/// The characters a series id may start with, in ascending order: the partitions of
/// [`SERIES`] that a listing without a prefix visits.
pub const INITIALS: &str = "-.0123456789:ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statements_name_the_brief_s_key() {
        assert_eq!(
            FRAGMENTS.create("ks"),
            "CREATE TABLE IF NOT EXISTS ks.day_fragments (series text, month int, day date, \
             version bigint, source text, line bigint, total bigint, slots blob, \
             interval_minutes int, unit text, quality int, \
             PRIMARY KEY ((series, month), day, version, source, line))"
        );
        assert_eq!(
            FRAGMENTS.insert("ks"),
            "INSERT INTO ks.day_fragments (series, month, day, version, source, line, total, \
             slots, interval_minutes, unit, quality) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        assert_eq!(
            SERIES.create("ks"),
            "CREATE TABLE IF NOT EXISTS ks.series_index (initial text, series text, \
             PRIMARY KEY ((initial), series))"
        );
    }

    #[test]
    fn initials_are_every_first_character_an_id_may_have_in_order() {
        let mut sorted: Vec<char> = INITIALS.chars().collect();
        sorted.sort_unstable();
        assert_eq!(sorted.iter().collect::<String>(), INITIALS);
        for c in (0u8..128).map(char::from) {
            let valid = meterflow_core::SeriesId::parse(c.to_string().as_bytes()).is_ok();
            assert_eq!(valid, INITIALS.contains(c), "{c:?}");
        }
    }
}
