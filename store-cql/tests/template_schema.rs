//! The CloudFormation template's `AWS::Cassandra::Table` (infra/template.yaml) against the
//! store's own definition of the table (`schema`): the same name, partition key, clustering
//! columns in ascending order, and regular columns, each with its type and in the same order.
//! A store that writes a column the deployed table lacks fails only at its first write on
//! AWS; this test fails instead.

use meterflow_store_cql::schema::{self, Column};
use serde_yaml_ng::Value;

const TEMPLATE: &str = include_str!("../../infra/template.yaml");

fn template() -> Value {
    serde_yaml_ng::from_str(TEMPLATE).expect("infra/template.yaml is YAML")
}

/// The one resource of `kind` in the template.
fn resource<'a>(template: &'a Value, kind: &str) -> &'a Value {
    let resources = template["Resources"]
        .as_mapping()
        .expect("the template has Resources");
    let found: Vec<&Value> = resources
        .values()
        .filter(|r| r["Type"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} in the template");
    found[0]
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

fn list<'a>(table: &'a Value, key: &str) -> &'a Vec<Value> {
    table["Properties"][key]
        .as_sequence()
        .unwrap_or_else(|| panic!("the table's {key} is a list"))
}

#[test]
fn the_template_s_table_is_the_store_s_table() {
    let template = template();
    let table = resource(&template, "AWS::Cassandra::Table");

    assert_eq!(
        text(&table["Properties"]["TableName"], "TableName"),
        schema::TABLE
    );

    let partition: Vec<_> = list(table, "PartitionKeyColumns")
        .iter()
        .map(column)
        .collect();
    assert_eq!(partition, owned(schema::PARTITION_KEY), "partition key");

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
    assert_eq!(clustering, owned(schema::CLUSTERING), "clustering columns");

    let regular: Vec<_> = list(table, "RegularColumns").iter().map(column).collect();
    assert_eq!(regular, owned(schema::REGULAR), "regular columns");
}

#[test]
fn the_table_lives_in_the_template_s_keyspace() {
    let template = template();
    let table = resource(&template, "AWS::Cassandra::Table");
    let keyspaces = template["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Cassandra::Keyspace"))
        .map(|(name, _)| text(name, "a resource's name"))
        .collect::<Vec<_>>();
    assert_eq!(keyspaces.len(), 1);
    // `KeyspaceName: !Ref Keyspace`: a tagged value.
    match &table["Properties"]["KeyspaceName"] {
        Value::Tagged(t) => {
            assert_eq!(t.tag, "Ref");
            assert_eq!(text(&t.value, "the !Ref"), keyspaces[0]);
        }
        other => panic!("KeyspaceName should be !Ref of the keyspace, is {other:?}"),
    }
}
