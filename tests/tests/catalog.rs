//! The built-in `catalog_connector` (Iceberg REST, AWS Glue, Unity Catalog) and the `catalog`
//! tool through the real sandbox, against recording servers that answer with bodies shaped
//! as in the Iceberg REST OpenAPI, the AWS Glue API reference and the Unity Catalog API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use databot::contract::HealthStatus;
use databot::runtime::ErrorKind;
use databot_e2e::{ScriptedResponse, SeenRequest, TestHost, serve_scripted};
use serde_json::{Value, json};

fn split(request: &SeenRequest) -> (&str, &str) {
    request
        .path
        .split_once('?')
        .unwrap_or((request.path.as_str(), ""))
}

fn not_found(message: &str) -> ScriptedResponse {
    ScriptedResponse::json(
        404,
        json!({"error": {"message": message, "type": "NoSuchTableException", "code": 404}}),
    )
}

/// A `LoadTableResult` with format-v2 metadata: two schema versions, the current one by id.
fn load_table_v2() -> Value {
    json!({
        "metadata-location": "s3://warehouse/accounting/tax/paid/metadata/00002-8d3c.metadata.json",
        "metadata": {
            "format-version": 2,
            "table-uuid": "bf289591-dcc0-4234-ad4f-5c3eed811a29",
            "location": "s3://warehouse/accounting/tax/paid",
            "last-sequence-number": 2,
            "last-updated-ms": 1_602_638_573_590u64,
            "last-column-id": 3,
            "current-schema-id": 1,
            "schemas": [
                {"type": "struct", "schema-id": 0, "fields": [
                    {"id": 1, "name": "id", "required": true, "type": "long"}
                ]},
                {"type": "struct", "schema-id": 1, "identifier-field-ids": [1], "fields": [
                    {"id": 1, "name": "id", "required": true, "type": "long"},
                    {"id": 2, "name": "amount", "required": false, "type": "decimal(10, 2)", "doc": "amount paid"},
                    {"id": 3, "name": "paid_at", "required": false, "type": "timestamptz"}
                ]}
            ],
            "default-spec-id": 0,
            "partition-specs": [{"spec-id": 0, "fields": [
                {"name": "paid_at_day", "transform": "day", "source-id": 3, "field-id": 1000}
            ]}],
            "last-partition-id": 1000,
            "default-sort-order-id": 0,
            "sort-orders": [{"order-id": 0, "fields": []}],
            "properties": {"write.format.default": "parquet", "owner": "finance"},
            "current-snapshot-id": 3_055_729_675_574_597_004u64,
            "snapshots": [
                {"snapshot-id": 3_051_729_675_574_597_004u64, "sequence-number": 1,
                 "timestamp-ms": 1_515_100_955_770u64, "summary": {"operation": "append"},
                 "manifest-list": "s3://warehouse/accounting/tax/paid/metadata/snap-3051.avro", "schema-id": 0},
                {"snapshot-id": 3_055_729_675_574_597_004u64, "parent-snapshot-id": 3_051_729_675_574_597_004u64,
                 "sequence-number": 2, "timestamp-ms": 1_555_100_955_770u64,
                 "summary": {"operation": "append", "added-data-files": "4"},
                 "manifest-list": "s3://warehouse/accounting/tax/paid/metadata/snap-3055.avro", "schema-id": 1}
            ],
            "snapshot-log": [
                {"snapshot-id": 3_051_729_675_574_597_004u64, "timestamp-ms": 1_515_100_955_770u64},
                {"snapshot-id": 3_055_729_675_574_597_004u64, "timestamp-ms": 1_555_100_955_770u64}
            ],
            "metadata-log": [{"metadata-file": "s3://warehouse/accounting/tax/paid/metadata/00001.metadata.json", "timestamp-ms": 1_515_100_955_770u64}]
        },
        "config": {}
    })
}

/// A `LoadTableResult` with format-v1 metadata (a single `schema`, `partition-spec`).
fn load_table_v1() -> Value {
    json!({
        "metadata-location": "s3://warehouse/accounting/tax/legacy/metadata/00000.metadata.json",
        "metadata": {
            "format-version": 1,
            "table-uuid": "c1a2e4f0-0000-4000-8000-1234567890ab",
            "location": "s3://warehouse/accounting/tax/legacy",
            "last-updated-ms": 1_515_100_955_770u64,
            "last-column-id": 2,
            "schema": {"type": "struct", "fields": [
                {"id": 1, "name": "ts", "required": false, "type": "timestamp"},
                {"id": 2, "name": "tags", "required": false,
                 "type": {"type": "list", "element-id": 3, "element": "string", "element-required": true}}
            ]},
            "partition-spec": [{"name": "ts_day", "transform": "day", "source-id": 1, "field-id": 1000}],
            "properties": {}
        }
    })
}

fn iceberg_server(request: &SeenRequest) -> ScriptedResponse {
    let (path, query) = split(request);
    let ok = |body: Value| ScriptedResponse::json(200, body);
    match (request.method.as_str(), path) {
        ("POST", "/v1/oauth/tokens") => {
            let token = if request.body.contains("client_id=client-1") {
                "tok-1"
            } else {
                "tok-2"
            };
            ok(json!({
                "access_token": token,
                "token_type": "bearer",
                "expires_in": 3600,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"
            }))
        }
        ("GET", "/v1/config") => ok(json!({
            "defaults": {"clients": "4", "prefix": "from-defaults"},
            "overrides": {"prefix": "wh-prefix"},
            "endpoints": ["GET /v1/{prefix}/namespaces", "GET /v1/{prefix}/namespaces/{namespace}/tables"]
        })),
        ("GET", "/v1/wh-prefix/namespaces") if query.contains("parent=accounting") => {
            ok(json!({"namespaces": [["accounting", "tax"]]}))
        }
        ("GET", "/v1/wh-prefix/namespaces") if query.contains("pageToken=p2") => {
            ok(json!({"namespaces": [["engineering"]]}))
        }
        ("GET", "/v1/wh-prefix/namespaces") => ok(json!({
            "namespaces": [["accounting"], ["sales"]],
            "next-page-token": "p2"
        })),
        ("GET", "/v1/wh-prefix/namespaces/accounting%1Ftax/tables")
            if query.contains("pageToken=t2") =>
        {
            ok(json!({"identifiers": [{"namespace": ["accounting", "tax"], "name": "refunds"}]}))
        }
        ("GET", "/v1/wh-prefix/namespaces/accounting%1Ftax/tables") => ok(json!({
            "identifiers": [
                {"namespace": ["accounting", "tax"], "name": "paid"},
                {"namespace": ["accounting", "tax"], "name": "owed"}
            ],
            "next-page-token": "t2"
        })),
        ("GET", "/v1/wh-prefix/namespaces/accounting/tables") => ok(json!({
            "identifiers": [{"namespace": ["accounting"], "name": "invoices_paid"}]
        })),
        ("GET", "/v1/wh-prefix/namespaces/sales/tables") => ok(json!({"identifiers": []})),
        ("GET", "/v1/wh-prefix/namespaces/accounting%1Ftax/tables/paid") => ok(load_table_v2()),
        ("GET", "/v1/wh-prefix/namespaces/accounting%1Ftax/tables/legacy") => ok(load_table_v1()),
        ("GET", "/v1/ops/namespaces") => ok(json!({"namespaces": [["ops"]]})),
        _ => not_found(&format!("Table does not exist: {path}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iceberg_rest_config_oauth_pagination_and_both_metadata_versions() {
    let (port, seen) = serve_scripted(|request, _| iceberg_server(request)).await;
    // No `driver`: the default, iceberg_rest, applies.
    let config = format!(
        "plugins:
  catalog_connector:
    config:
      warehouse: wh
      oauth_client_id: client-1
      oauth_client_secret: secret-1
      oauth_scope: PRINCIPAL_ROLE:ALL
      search_max_namespaces: 2
    permissions:
      state: true
    endpoints:
      api:
        url: http://127.0.0.1:{port}
  iceberg_nostate:
    builtin: catalog_connector
    config:
      prefix: ops
      oauth_client_id: client-2
      oauth_client_secret: secret-2
    endpoints:
      api:
        url: http://127.0.0.1:{port}
"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("catalog_connector").await;
    let c = "catalog_connector";

    let namespaces = host.connector_ok(c, "list_namespaces", json!({})).await;
    let names: Vec<&str> = namespaces["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["accounting", "sales", "engineering"],
        "{namespaces}"
    );
    assert_eq!(namespaces["driver"], "iceberg_rest");
    assert_eq!(namespaces["truncated"], false);

    let nested = host
        .connector_ok(c, "list_namespaces", json!({"parent": "accounting"}))
        .await;
    assert_eq!(nested["items"][0]["name"], "accounting.tax");
    assert_eq!(nested["items"][0]["levels"], json!(["accounting", "tax"]));

    // `database` is accepted for `namespace`; both pages of tables are followed.
    let tables = host
        .connector_ok(c, "list_tables", json!({"database": "accounting.tax"}))
        .await;
    let names: Vec<&str> = tables["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["paid", "owed", "refunds"], "{tables}");
    assert_eq!(tables["items"][0]["namespace"], "accounting.tax");
    let limited = host
        .connector_ok(
            c,
            "list_tables",
            json!({"namespace": "accounting.tax", "limit": 2}),
        )
        .await;
    assert_eq!(limited["count"], 2);
    assert_eq!(limited["truncated"], true);

    // Format v2: the schema named by current-schema-id, not the first one listed.
    let schema = host
        .connector_ok(
            c,
            "get_table_schema",
            json!({"table": "accounting.tax.paid"}),
        )
        .await;
    assert_eq!(schema["schema_id"], 1, "{schema}");
    let columns = schema["columns"].as_array().unwrap();
    assert_eq!(columns.len(), 3, "{schema}");
    assert_eq!(columns[0]["name"], "id");
    assert_eq!(columns[0]["nullable"], false);
    assert_eq!(columns[1]["type"], "decimal(10, 2)");
    assert_eq!(columns[1]["comment"], "amount paid");
    assert_eq!(schema["partition_fields"][0]["source_column"], "paid_at");
    assert_eq!(schema["partition_fields"][0]["transform"], "day");

    // Format v1: the single `schema`.
    let legacy = host
        .connector_ok(
            c,
            "get_table_schema",
            json!({"namespace": "accounting.tax", "table": "legacy"}),
        )
        .await;
    assert_eq!(legacy["columns"][1]["type"], "list<string>", "{legacy}");
    assert_eq!(legacy["partition_fields"][0]["source_column"], "ts");

    let metadata = host
        .connector_ok(
            c,
            "get_table_metadata",
            json!({"namespace": "accounting.tax", "table": "paid"}),
        )
        .await;
    assert_eq!(metadata["format_version"], 2);
    assert_eq!(metadata["location"], "s3://warehouse/accounting/tax/paid");
    assert_eq!(
        metadata["current_snapshot"]["summary"]["added-data-files"],
        "4"
    );
    assert_eq!(metadata["history"]["snapshots_count"], 2);
    assert!(metadata["metadata"].get("snapshots").is_none());

    // Search lists at most `search_max_namespaces` namespaces and says it was bounded.
    let found = host
        .connector_ok(c, "search", json!({"query": "PAID"}))
        .await;
    assert_eq!(found["matches"][0]["name"], "invoices_paid", "{found}");
    assert_eq!(found["namespaces_scanned"], 2);
    assert_eq!(found["complete"], false);

    let error = host
        .runtime
        .execute_connector(
            c,
            "get_table_schema",
            r#"{"namespace": "accounting.tax", "table": "missing"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(error.message.contains("Table does not exist"), "{error}");
    let error = host
        .runtime
        .execute_connector(c, "get_table_schema", r#"{"table": "paid"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("namespace"), "{error}");

    let health = host.runtime.connector_health(c).await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{}", health.message);

    // What went over the wire.
    let all = seen.all();
    let token_requests: Vec<&SeenRequest> = all
        .iter()
        .filter(|r| r.path == "/v1/oauth/tokens" && r.body.contains("client-1"))
        .collect();
    assert_eq!(
        token_requests.len(),
        1,
        "the token is cached in state across calls"
    );
    let form = &token_requests[0];
    assert_eq!(
        form.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    for part in [
        "grant_type=client_credentials",
        "client_id=client-1",
        "client_secret=secret-1",
        "scope=PRINCIPAL_ROLE%3AALL",
    ] {
        assert!(form.body.contains(part), "{part} in {}", form.body);
    }
    for request in all.iter().filter(|r| r.method == "GET") {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer tok-1"),
            "{}",
            request.path
        );
    }
    assert!(all.iter().any(|r| r.path == "/v1/config?warehouse=wh"));
    let namespace_pages: Vec<&str> = all
        .iter()
        .filter(|r| r.path.starts_with("/v1/wh-prefix/namespaces?") && !r.path.contains("parent"))
        .map(|r| r.path.as_str())
        .take(2)
        .collect();
    assert_eq!(
        namespace_pages,
        [
            "/v1/wh-prefix/namespaces?pageToken=",
            "/v1/wh-prefix/namespaces?pageToken=p2"
        ]
    );
    assert!(
        all.iter()
            .any(|r| r.path == "/v1/wh-prefix/namespaces?parent=accounting&pageToken=")
    );
    assert!(
        !all.iter()
            .any(|r| r.path.starts_with("/v1/wh-prefix/namespaces/engineering")),
        "search stays within its namespace budget"
    );

    // Without the state grant the token is fetched per call, and the operator's prefix wins
    // over the one the server returns.
    for _ in 0..2 {
        let listed = host
            .connector_ok("iceberg_nostate", "list_namespaces", json!({}))
            .await;
        assert_eq!(listed["items"][0]["name"], "ops");
    }
    let all = seen.all();
    let second_client = all
        .iter()
        .filter(|r| r.path == "/v1/oauth/tokens" && r.body.contains("client-2"))
        .count();
    assert_eq!(second_client, 2);
    assert!(
        all.iter()
            .filter(|r| r.path.starts_with("/v1/ops/"))
            .all(|r| r.header("authorization") == Some("Bearer tok-2"))
    );
}

fn glue_table() -> Value {
    json!({
        "Name": "orders",
        "DatabaseName": "sales",
        "Owner": "hadoop",
        "CreateTime": 1.700_000_000e9,
        "UpdateTime": 1.700_050_000e9,
        "Retention": 0,
        "StorageDescriptor": {
            "Columns": [
                {"Name": "order_id", "Type": "bigint"},
                {"Name": "amount", "Type": "decimal(10,2)", "Comment": "order total"}
            ],
            "Location": "s3://example-bucket/sales/orders/",
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "Compressed": false,
            "NumberOfBuckets": -1,
            "SerdeInfo": {
                "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                "Parameters": {"serialization.format": "1"}
            },
            "StoredAsSubDirectories": false
        },
        "PartitionKeys": [{"Name": "dt", "Type": "string"}],
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
        "CatalogId": "123456789012",
        "IsRegisteredWithLakeFormation": false,
        "VersionId": "3"
    })
}

fn glue_server(request: &SeenRequest) -> ScriptedResponse {
    let body: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
    let ok = |body: Value| ScriptedResponse::json(200, body);
    match request.header("x-amz-target").unwrap_or_default() {
        "AWSGlue.GetCatalogs" => ok(json!({"CatalogList": [
            {"CatalogId": "123456789012", "Name": "123456789012", "Description": "Default catalog",
             "ResourceArn": "arn:aws:glue:us-east-1:123456789012:catalog"}
        ]})),
        "AWSGlue.GetDatabases" if body.get("NextToken").is_some() => ok(json!({
            "DatabaseList": [{"Name": "marketing", "CatalogId": "123456789012", "CreateTime": 1.7e9}]
        })),
        "AWSGlue.GetDatabases" => ok(json!({
            "DatabaseList": [{
                "Name": "sales", "Description": "Sales data",
                "LocationUri": "s3://example-bucket/sales/", "CatalogId": "123456789012",
                "CreateTime": 1.7e9,
                "CreateTableDefaultPermissions": [{"Principal": {"DataLakePrincipalIdentifier": "IAM_ALLOWED_PRINCIPALS"}, "Permissions": ["ALL"]}]
            }],
            "NextToken": "eyJsYXN0RXZhbHVhdGVkS2V5Ijp7fX0="
        })),
        "AWSGlue.GetTables" => ok(json!({"TableList": [glue_table()]})),
        "AWSGlue.GetTable" if body["Name"] == "orders" => ok(json!({"Table": glue_table()})),
        "AWSGlue.GetTable" => ScriptedResponse::json(
            400,
            json!({"__type": "EntityNotFoundException", "Message": "Table nope not found."}),
        ),
        "AWSGlue.SearchTables" => ok(json!({"TableList": [glue_table()]})),
        _ => ScriptedResponse::json(
            400,
            json!({"__type": "UnknownOperationException", "message": "unknown"}),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_requests_are_sigv4_signed_and_paginated() {
    let (port, seen) = serve_scripted(|request, _| glue_server(request)).await;
    let config = format!(
        "plugins:
  catalog_connector:
    config:
      driver: glue
      region: us-east-1
      access_key_id: AKIDEXAMPLE
      secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
      session_token: FQoGZXIvYXdzEXAMPLETOKEN
      catalog_id: \"123456789012\"
    endpoints:
      api:
        url: http://127.0.0.1:{port}
  bare:
    builtin: catalog_connector
  wrong_driver:
    builtin: catalog_connector
    config:
      driver: hive
  glue_nokeys:
    builtin: catalog_connector
    config:
      driver: glue
      region: eu-west-1
"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("catalog_connector").await;
    let c = "catalog_connector";

    let databases = host.connector_ok(c, "list_namespaces", json!({})).await;
    let names: Vec<&str> = databases["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sales", "marketing"], "{databases}");
    assert_eq!(
        databases["items"][0]["location"],
        "s3://example-bucket/sales/"
    );

    let tables = host
        .connector_ok(c, "list_tables", json!({"namespace": "sales"}))
        .await;
    assert_eq!(tables["items"][0]["name"], "orders");
    assert_eq!(tables["items"][0]["format"], "parquet");

    let schema = host
        .connector_ok(
            c,
            "get_table_schema",
            json!({"database": "sales", "table": "orders"}),
        )
        .await;
    let columns = schema["columns"].as_array().unwrap();
    assert_eq!(columns.len(), 3, "{schema}");
    assert_eq!(columns[1]["comment"], "order total");
    assert_eq!(columns[2]["name"], "dt");
    assert_eq!(columns[2]["is_partition"], true);

    let metadata = host
        .connector_ok(c, "get_table_metadata", json!({"table": "sales.orders"}))
        .await;
    assert_eq!(metadata["location"], "s3://example-bucket/sales/orders/");
    assert_eq!(
        metadata["serde"],
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    );

    let found = host
        .connector_ok(c, "search", json!({"query": "ord", "limit": 5}))
        .await;
    assert_eq!(found["matches"][0]["namespace"], "sales");
    assert_eq!(found["complete"], true);

    let catalogs = host.connector_ok(c, "list_catalogs", json!({})).await;
    assert_eq!(catalogs["items"][0]["catalog_id"], "123456789012");

    let error = host
        .runtime
        .execute_connector(
            c,
            "get_table_schema",
            r#"{"namespace": "sales", "table": "nope"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(error.message.contains("Table nope not found"), "{error}");

    let health = host.runtime.connector_health(c).await.unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{}", health.message);

    let all = seen.all();
    let targets: Vec<&str> = all
        .iter()
        .map(|r| r.header("x-amz-target").unwrap_or_default())
        .collect();
    assert_eq!(
        &targets[..3],
        [
            "AWSGlue.GetDatabases",
            "AWSGlue.GetDatabases",
            "AWSGlue.GetTables"
        ]
    );
    assert_eq!(all[0].json(), json!({"CatalogId": "123456789012"}));
    assert_eq!(
        all[1].json(),
        json!({"CatalogId": "123456789012", "NextToken": "eyJsYXN0RXZhbHVhdGVkS2V5Ijp7fX0="})
    );
    assert_eq!(
        all[2].json(),
        json!({"CatalogId": "123456789012", "DatabaseName": "sales"})
    );
    for request in &all {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-amz-json-1.1")
        );
        assert_eq!(
            request.header("x-amz-security-token"),
            Some("FQoGZXIvYXdzEXAMPLETOKEN")
        );
        let date = request.header("x-amz-date").unwrap();
        assert_eq!(date.len(), 16, "{date}");
        assert!(date.ends_with('Z') && date.as_bytes()[8] == b'T', "{date}");
        let auth = request.header("authorization").unwrap();
        let prefix = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{}/us-east-1/glue/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=",
            &date[..8]
        );
        assert!(auth.starts_with(&prefix), "{auth}");
        let signature = &auth[prefix.len()..];
        assert_eq!(signature.len(), 64, "{auth}");
        assert!(
            signature
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
    // Different requests carry different signatures (the body is signed).
    assert_ne!(
        all[0].header("authorization"),
        all[1].header("authorization")
    );

    // Configuration mistakes are clear.
    let error = host
        .runtime
        .execute_connector("bare", "list_namespaces", "{}")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(error.message.contains("endpoints.api.url"), "{error}");
    let health = host.runtime.connector_health("bare").await.unwrap();
    assert_eq!(health.status, HealthStatus::NotConfigured);
    let error = host
        .runtime
        .execute_connector("wrong_driver", "list_namespaces", "{}")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("iceberg_rest"), "{error}");
    let error = host
        .runtime
        .execute_connector("glue_nokeys", "list_namespaces", "{}")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("access_key_id"), "{error}");
}

fn unity_server(busy_once: &AtomicBool, request: &SeenRequest) -> ScriptedResponse {
    let (path, query) = split(request);
    let ok = |body: Value| ScriptedResponse::json(200, body);
    match path {
        "/api/2.1/unity-catalog/catalogs" => {
            if busy_once.swap(false, Ordering::SeqCst) {
                let mut busy = ScriptedResponse::json(
                    503,
                    json!({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "try later"}),
                );
                busy.headers.push(("retry-after".into(), "0".into()));
                return busy;
            }
            ok(json!({"catalogs": [
                {"name": "main", "comment": "Main catalog", "owner": "admins",
                 "catalog_type": "MANAGED_CATALOG", "created_at": 1_700_000_000_000u64},
                {"name": "hive_metastore", "owner": "System user", "catalog_type": "HIVE_METASTORE_CATALOG"}
            ]}))
        }
        "/api/2.1/unity-catalog/schemas" if query.contains("page_token=s2") => ok(json!({
            "schemas": [{"name": "finance", "catalog_name": "main", "full_name": "main.finance"}]
        })),
        "/api/2.1/unity-catalog/schemas" => ok(json!({
            "schemas": [{"name": "sales", "catalog_name": "main", "full_name": "main.sales",
                         "comment": "Sales", "owner": "alice"}],
            "next_page_token": "s2"
        })),
        "/api/2.1/unity-catalog/tables" if query.contains("schema_name=sales") => ok(json!({
            "tables": [{"name": "orders", "catalog_name": "main", "schema_name": "sales",
                        "table_type": "MANAGED", "data_source_format": "DELTA",
                        "full_name": "main.sales.orders"}]
        })),
        "/api/2.1/unity-catalog/tables" => ok(json!({"tables": []})),
        "/api/2.1/unity-catalog/tables/main.sales.orders" => ok(json!({
            "name": "orders", "catalog_name": "main", "schema_name": "sales",
            "table_type": "MANAGED", "data_source_format": "DELTA",
            "full_name": "main.sales.orders",
            "storage_location": "s3://uc-bucket/main/sales/orders",
            "owner": "alice", "comment": "All orders",
            "columns": [
                {"name": "dt", "type_text": "date", "type_name": "DATE", "position": 1,
                 "nullable": true, "partition_index": 0},
                {"name": "order_id", "type_text": "bigint", "type_name": "LONG", "position": 0,
                 "nullable": false, "comment": "key"}
            ],
            "properties": {"delta.minReaderVersion": "1"},
            "created_at": 1_700_000_000_000u64, "updated_at": 1_700_000_500_000u64,
            "table_id": "f0c3bd1e-1111-4222-8333-444455556666"
        })),
        _ => ScriptedResponse::json(
            404,
            json!({"error_code": "TABLE_DOES_NOT_EXIST", "message": "Table 'main.sales.nope' does not exist."}),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_tools_match_the_connector_and_run_unity() {
    let busy_once = Arc::new(AtomicBool::new(true));
    let flag = busy_once.clone();
    let (port, seen) = serve_scripted(move |request, _| unity_server(&flag, request)).await;
    let config = format!(
        "plugins:
  catalog:
    config:
      connectors: [lake]
    permissions:
      connectors: [lake]
  lake:
    builtin: catalog_connector
    config:
      driver: unity
      catalog: main
      max_retries: 2
    endpoints:
      api:
        url: http://127.0.0.1:{port}
        auth: {{type: bearer, token: dapi-secret}}
"
    );
    let host = TestHost::start(&config, &[]).await.unwrap();
    host.load_builtin("catalog").await;

    // Every tool is `catalog_<operation>` of the connector, with the same arguments plus
    // `connector`: a tool names exactly the connector's operation.
    let lake = host.runtime.plugin("lake").unwrap().current();
    let tools: Vec<_> = host
        .runtime
        .tools()
        .into_iter()
        .filter(|t| t.plugin == "catalog")
        .collect();
    assert_eq!(tools.len(), 6);
    for tool in &tools {
        let operation = tool.name.strip_prefix("catalog_").unwrap();
        let spec = lake
            .operation(operation)
            .unwrap_or_else(|| panic!("{} has no connector operation", tool.name));
        let op_schema: Value = serde_json::from_str(&spec.input_schema).unwrap();
        let mut tool_fields: Vec<String> = tool.input_schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        tool_fields.sort();
        let mut expected: Vec<String> = op_schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .chain(["connector".to_string()])
            .collect();
        expected.sort();
        assert_eq!(tool_fields, expected, "{}", tool.name);
    }

    let catalogs = host.tool_ok("catalog_list_catalogs", json!({})).await;
    assert_eq!(catalogs["items"][0]["name"], "main", "{catalogs}");
    assert_eq!(catalogs["count"], 2);

    let schemas = host.tool_ok("catalog_list_namespaces", json!({})).await;
    let names: Vec<&str> = schemas["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sales", "finance"]);
    assert_eq!(schemas["catalog"], "main");

    // `database` becomes `namespace`; `catalog_name` is honoured.
    let other = host
        .tool_ok(
            "catalog_list_tables",
            json!({"database": "default", "catalog_name": "other"}),
        )
        .await;
    assert_eq!(other["catalog"], "other");
    assert_eq!(other["namespace"], "default");

    let schema = host
        .tool_ok("catalog_get_table_schema", json!({"table": "sales.orders"}))
        .await;
    assert_eq!(schema["columns"][0]["name"], "order_id", "{schema}");
    assert_eq!(schema["columns"][0]["nullable"], false);
    assert_eq!(schema["columns"][1]["is_partition"], true);

    let metadata = host
        .tool_ok(
            "catalog_get_table_metadata",
            json!({"namespace": "sales", "table": "orders", "connector": "lake"}),
        )
        .await;
    assert_eq!(metadata["format"], "DELTA");
    assert_eq!(metadata["location"], "s3://uc-bucket/main/sales/orders");

    let found = host
        .tool_ok("catalog_search", json!({"query": "order"}))
        .await;
    assert_eq!(found["matches"][0]["name"], "orders", "{found}");
    assert_eq!(found["complete"], true);

    let error = host
        .runtime
        .call_tool(
            "catalog_get_table_schema",
            r#"{"namespace": "sales", "table": "nope"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound, "{error}");
    assert!(error.message.contains("does not exist"), "{error}");
    let error = host
        .runtime
        .call_tool(
            "catalog_list_tables",
            r#"{"namespace": "sales", "database": "finance"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    let error = host
        .runtime
        .call_tool(
            "catalog_list_tables",
            r#"{"namespace": "sales", "connector": "warehouse"}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("lake"), "{error}");
    let error = host
        .runtime
        .call_tool("catalog_list_tables", r#"{"table": "x"}"#)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");

    let all = seen.all();
    assert_eq!(
        all[0].path,
        "/api/2.1/unity-catalog/catalogs?max_results=1000"
    );
    assert_eq!(all[1].path, all[0].path, "the 503 was retried");
    for request in &all {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer dapi-secret"),
            "{}",
            request.path
        );
    }
    assert!(all.iter().any(|r| r.path
        == "/api/2.1/unity-catalog/schemas?catalog_name=main&max_results=1000&page_token=s2"));
    assert!(all.iter().any(|r| r.path
        == "/api/2.1/unity-catalog/tables?catalog_name=other&schema_name=default&max_results=1000"));
    assert!(
        all.iter()
            .any(|r| r.path == "/api/2.1/unity-catalog/tables/main.sales.orders")
    );
}
