//! The CloudFormation template's `AWS::Cassandra::Table`s (infra/template.yaml) against the
//! store's own definitions (`schema::TABLES`): the same tables, each with the same name,
//! partition key, clustering columns in ascending order, and regular columns, each with its
//! type and in the same order.
//! A store that writes a column the deployed table lacks fails only at its first write on
//! AWS; this test fails instead.

use meterflow_store_cql::schema::{self, Column};
use serde_yaml_ng::Value;

const TEMPLATE: &str = include_str!("../../infra/template.yaml");

fn template() -> Value {
    serde_yaml_ng::from_str(TEMPLATE).expect("infra/template.yaml is YAML")
}

/// The template's resources of `kind`, by logical name.
fn resources<'a>(template: &'a Value, kind: &str) -> Vec<(String, &'a Value)> {
    template["Resources"]
        .as_mapping()
        .expect("the template has Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(name, r)| (text(name, "a resource's name"), r))
        .collect()
}

fn text(v: &Value, what: &str) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is a string, not {v:?}"))
        .to_owned()
}

fn column(v: &Value) -> (String, String) {
    (
        text(&v["ColumnName"], "ColumnName"),
        text(&v["ColumnType"], "ColumnType"),
    )
}

fn owned(columns: &[Column]) -> Vec<(String, String)> {
    columns
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// The table's list `key` (absent: empty, as CloudFormation reads it).
fn list<'a>(table: &'a Value, key: &str) -> &'a [Value] {
    match &table["Properties"][key] {
        Value::Null => &[],
        v => v
            .as_sequence()
            .unwrap_or_else(|| panic!("the table's {key} is a list")),
    }
}

#[test]
fn the_template_s_tables_are_the_store_s_tables() {
    let template = template();
    let tables = resources(&template, "AWS::Cassandra::Table");
    let names: Vec<String> = tables
        .iter()
        .map(|(_, t)| text(&t["Properties"]["TableName"], "TableName"))
        .collect();
    let want: Vec<&str> = schema::TABLES.iter().map(|t| t.name).collect();
    assert_eq!(names, want, "the template's tables, in the store's order");
    for ((_, table), def) in tables.iter().zip(schema::TABLES) {
        let partition: Vec<_> = list(table, "PartitionKeyColumns")
            .iter()
            .map(column)
            .collect();
        assert_eq!(
            partition,
            owned(def.partition_key),
            "{}: partition key",
            def.name
        );
        let clustering: Vec<_> = list(table, "ClusteringKeyColumns")
            .iter()
            .map(|c| {
                assert_eq!(
                    c["OrderBy"].as_str(),
                    Some("ASC"),
                    "the store reads clustering columns in ascending order: {c:?}"
                );
                column(&c["Column"])
            })
            .collect();
        assert_eq!(
            clustering,
            owned(def.clustering),
            "{}: clustering",
            def.name
        );
        let regular: Vec<_> = list(table, "RegularColumns").iter().map(column).collect();
        assert_eq!(regular, owned(def.regular), "{}: regular columns", def.name);
    }
}

#[test]
fn the_tables_live_in_the_template_s_keyspace() {
    let template = template();
    let keyspaces = resources(&template, "AWS::Cassandra::Keyspace");
    assert_eq!(keyspaces.len(), 1);
    for (name, table) in resources(&template, "AWS::Cassandra::Table") {
        // `KeyspaceName: !Ref Keyspace`: a tagged value.
        match &table["Properties"]["KeyspaceName"] {
            Value::Tagged(t) => {
                assert_eq!(t.tag, "Ref");
                assert_eq!(text(&t.value, "the !Ref"), keyspaces[0].0);
            }
            other => panic!("{name}'s KeyspaceName should be !Ref of the keyspace, is {other:?}"),
        }
    }
}
