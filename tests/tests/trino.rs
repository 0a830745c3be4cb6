//! The built-in `sql_connector` on its Trino/Presto path, as a connector instance (`lake`)
//! driven against a coordinator speaking the Trino client protocol: `POST /v1/statement`,
//! `nextUri` paging with `columns` once and `data` across pages, `error` objects, `updateCount`,
//! prepared statements through the `X-Trino-Prepared-Statement` header and cancellation with
//! `DELETE nextUri`. Checks the requests the component sent (session headers, host-injected
//! basic auth) and that the host's SQL policy refuses before any request is made.

use databot::contract::HealthStatus;
use databot::runtime::ErrorKind;
use databot_e2e::{ScriptedResponse, SeenRequest, TestHost, serve_scripted};
use serde_json::{Value, json};

/// `u:p` in base64, as the host must add it.
const BASIC_U_P: &str = "Basic dTpw";

/// What the coordinator does with one statement.
#[derive(Clone)]
enum Outcome {
    /// `columns` on the first page after the queue, then one `data` page per `nextUri`, then
    /// a final page without `nextUri`.
    Rows { columns: Value, pages: Vec<Value> },
    /// The query fails with this `error` object (state FAILED).
    Fails(Value),
    /// A write: `updateType` and `updateCount`.
    Updates(&'static str, u64),
    /// The POST itself answers this status with this text.
    Status(u16, &'static str),
}

fn column(name: &str, kind: &str) -> Value {
    let arguments = if kind == "varchar" {
        json!([{"kind": "LONG", "value": 2147483647}])
    } else {
        json!([])
    };
    json!({"name": name, "type": kind, "typeSignature": {"rawType": kind, "arguments": arguments}})
}

fn rows(columns: Value, pages: Vec<Value>) -> Outcome {
    Outcome::Rows { columns, pages }
}

fn query_id(index: usize) -> String {
    format!("20260301_101500_{index:05}_dbtst")
}

fn stats(state: &str, rows: u64) -> Value {
    json!({
        "state": state,
        "queued": state == "QUEUED",
        "scheduled": state != "QUEUED",
        "nodes": if state == "QUEUED" { 0 } else { 1 },
        "totalSplits": 4, "queuedSplits": 0, "runningSplits": 0, "completedSplits": 4,
        "cpuTimeMillis": 12, "wallTimeMillis": 30, "queuedTimeMillis": 1, "elapsedTimeMillis": 45,
        "processedRows": rows, "processedBytes": rows * 24, "physicalInputBytes": 0,
        "peakMemoryBytes": 0, "spilledBytes": 0
    })
}

/// One `QueryResults` document.
fn results(
    host: &str,
    id: &str,
    state: &str,
    next: Option<String>,
) -> serde_json::Map<String, Value> {
    let mut page = serde_json::Map::new();
    page.insert("id".into(), json!(id));
    page.insert(
        "infoUri".into(),
        json!(format!("http://{host}/ui/query.html?{id}")),
    );
    if let Some(next) = next {
        page.insert("nextUri".into(), json!(next));
    }
    page.insert("stats".into(), stats(state, 0));
    page.insert("warnings".into(), json!([]));
    page
}

/// Body and, decoded, the prepared statement the request carries (Trino or Presto header).
fn statement_text(request: &SeenRequest) -> String {
    let prepared = prepared_statement(request).unwrap_or_default();
    format!("{} {prepared}", request.body)
}

fn prepared_statement(request: &SeenRequest) -> Option<String> {
    let header = request
        .header("x-trino-prepared-statement")
        .or_else(|| request.header("x-presto-prepared-statement"))?;
    let (name, encoded) = header.split_once('=').expect("name=statement");
    assert_eq!(name, "databot_statement");
    Some(form_decode(encoded))
}

/// `application/x-www-form-urlencoded` decoding, as Trino's `URLDecoder` does.
fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("a %XX escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

/// A coordinator that knows `scripts` (a fragment of the statement text, first match wins).
fn coordinator(
    scripts: Vec<(&'static str, Outcome)>,
) -> impl Fn(&SeenRequest, usize) -> ScriptedResponse + Send + Sync + 'static {
    move |request, index| {
        let host = request.header("host").unwrap_or("127.0.0.1").to_owned();
        let segments: Vec<&str> = request.path.split('/').collect();
        let uri = |stage: &str, id: &str, k: usize, token: usize| {
            format!("http://{host}/v1/statement/{stage}/{id}/y{k}/{token}")
        };
        let script = |slug: &str| -> &Outcome {
            let k: usize = slug.trim_start_matches('y').parse().expect("our slug");
            &scripts[k].1
        };
        match (request.method.as_str(), segments.as_slice()) {
            ("POST", ["", "v1", "statement"]) => {
                let text = statement_text(request);
                let Some(k) = scripts.iter().position(|(f, _)| text.contains(f)) else {
                    return ScriptedResponse::json(
                        400,
                        json!({"message": format!("unscripted statement: {text}")}),
                    );
                };
                if let Outcome::Status(status, body) = &scripts[k].1 {
                    return ScriptedResponse {
                        status: *status,
                        headers: vec![("content-type".into(), "text/plain".into())],
                        chunks: vec![(*body).to_owned()],
                        pause: std::time::Duration::ZERO,
                    };
                }
                let id = query_id(index);
                let page = results(&host, &id, "QUEUED", Some(uri("queued", &id, k, 1)));
                ScriptedResponse::json(200, Value::Object(page))
            }
            ("GET", ["", "v1", "statement", "queued", id, slug, "1"]) => {
                let k: usize = slug.trim_start_matches('y').parse().expect("our slug");
                let page = match script(slug) {
                    Outcome::Rows { columns, .. } => {
                        let mut page =
                            results(&host, id, "RUNNING", Some(uri("executing", id, k, 1)));
                        page.insert("columns".into(), columns.clone());
                        page
                    }
                    Outcome::Fails(error) => {
                        let mut page = results(&host, id, "FAILED", None);
                        page.insert("error".into(), error.clone());
                        page
                    }
                    Outcome::Updates(kind, count) => {
                        let mut page = results(&host, id, "FINISHED", None);
                        page.insert("columns".into(), json!([column("rows", "bigint")]));
                        page.insert("data".into(), json!([[count]]));
                        page.insert("updateType".into(), json!(kind));
                        page.insert("updateCount".into(), json!(count));
                        page
                    }
                    Outcome::Status(..) => unreachable!("answered at POST"),
                };
                ScriptedResponse::json(200, Value::Object(page))
            }
            ("GET", ["", "v1", "statement", "executing", id, slug, token]) => {
                let k: usize = slug.trim_start_matches('y').parse().expect("our slug");
                let token: usize = token.parse().expect("a token");
                let Outcome::Rows { pages, .. } = script(slug) else {
                    panic!("only row queries execute");
                };
                let page = if token <= pages.len() {
                    let mut page = results(
                        &host,
                        id,
                        "RUNNING",
                        Some(uri("executing", id, k, token + 1)),
                    );
                    page.insert("data".into(), pages[token - 1].clone());
                    page
                } else {
                    results(&host, id, "FINISHED", None)
                };
                ScriptedResponse::json(200, Value::Object(page))
            }
            ("DELETE", ["", "v1", "statement", "executing", ..]) => ScriptedResponse {
                status: 204,
                headers: Vec::new(),
                chunks: Vec::new(),
                pause: std::time::Duration::ZERO,
            },
            _ => ScriptedResponse::json(
                404,
                json!({"message": format!("unscripted {} {}", request.method, request.path)}),
            ),
        }
    }
}

/// A host with the instance `lake` of `sql_connector` on the coordinator at `port`; `extra`
/// adds lines to its `config` (six spaces of indent).
async fn lake(port: u16, extra: &str) -> TestHost {
    let config = format!(
        "plugins:\n  lake:\n    builtin: sql_connector\n    endpoints:\n      trino:\n        url: http://127.0.0.1:{port}\n        auth: {{type: basic, username: u, password: p}}\n    config:\n      catalog: hive\n      schema: sales\n      trino_user: analyst\n{extra}"
    );
    TestHost::start(&config, &[])
        .await
        .expect("the host starts")
}

fn trail(requests: &[SeenRequest]) -> Vec<(String, String)> {
    requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect()
}

fn pair(method: &str, path: String) -> (String, String) {
    (method.to_owned(), path)
}

fn posts(requests: &[SeenRequest]) -> Vec<SeenRequest> {
    requests
        .iter()
        .filter(|r| r.method == "POST")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_follows_next_uri_across_pages_with_session_headers_and_host_auth() {
    let statement = "SELECT region, count(*) AS orders FROM orders GROUP BY region";
    let (port, seen) = serve_scripted(coordinator(vec![(
        "GROUP BY region",
        rows(
            json!([column("region", "varchar"), column("orders", "bigint")]),
            vec![json!([["EMEA", 12], ["APAC", 7]]), json!([["AMER", 30]])],
        ),
    )]))
    .await;
    let host = lake(port, "").await;

    let out = host
        .connector_ok("lake", "query", json!({"statement": statement}))
        .await;
    assert_eq!(out["columns"], json!(["region", "orders"]));
    assert_eq!(out["column_types"], json!(["varchar", "bigint"]));
    assert_eq!(
        out["rows"],
        json!([["EMEA", 12], ["APAC", 7], ["AMER", 30]])
    );
    assert_eq!(out["row_count"], 3);
    assert_eq!(out["truncated"], false);
    assert!(out.get("notice").is_none(), "{out}");

    let requests = seen.all();
    let id = query_id(0);
    assert_eq!(
        trail(&requests),
        vec![
            pair("POST", "/v1/statement".into()),
            pair("GET", format!("/v1/statement/queued/{id}/y0/1")),
            pair("GET", format!("/v1/statement/executing/{id}/y0/1")),
            pair("GET", format!("/v1/statement/executing/{id}/y0/2")),
            pair("GET", format!("/v1/statement/executing/{id}/y0/3")),
        ]
    );
    let post = &requests[0];
    assert_eq!(post.body, statement, "the SQL is the POST body, as is");
    assert!(
        post.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        post.headers
    );
    assert_eq!(post.header("x-trino-prepared-statement"), None);
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some(BASIC_U_P),
            "the host injects the credentials on {} {}",
            request.method,
            request.path
        );
        assert_eq!(request.header("x-trino-user"), Some("analyst"));
        assert_eq!(request.header("x-trino-catalog"), Some("hive"));
        assert_eq!(request.header("x-trino-schema"), Some("sales"));
        assert_eq!(request.header("x-trino-source"), Some("databot"));
        assert!(
            !request
                .headers
                .iter()
                .any(|(n, _)| n.starts_with("x-presto-")),
            "{:?}",
            request.headers
        );
    }

    let info = host.connector_ok("lake", "info", json!({})).await;
    assert_eq!(info["dialect"], "trino");
    assert_eq!(info["writable"], false);
    assert_eq!(
        info["source"],
        format!("http://127.0.0.1:{port} (hive.sales)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_params_travel_as_a_prepared_statement_executed_with_literals() {
    let statement = "SELECT id, note FROM orders WHERE quantity > ? AND note = ?";
    let (port, seen) = serve_scripted(coordinator(vec![
        (
            "FROM orders WHERE quantity",
            rows(
                json!([column("id", "bigint"), column("note", "varchar")]),
                vec![json!([[7, "it's"]])],
            ),
        ),
        (
            "SELECT ?, ?, ?, ?, ?",
            rows(json!([column("_col0", "boolean")]), vec![json!([[true]])]),
        ),
    ]))
    .await;
    let host = lake(port, "").await;

    let out = host
        .connector_ok(
            "lake",
            "query",
            json!({"statement": statement, "params": [10, "it's"]}),
        )
        .await;
    assert_eq!(out["rows"], json!([[7, "it's"]]));
    let post = &posts(&seen.all())[0];
    assert_eq!(post.body, "EXECUTE databot_statement USING 10, 'it''s'");
    let header = post
        .header("x-trino-prepared-statement")
        .expect("the prepared statement header");
    assert!(
        header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%=".contains(&b)),
        "the statement is URL-encoded in the header: {header}"
    );
    assert_eq!(prepared_statement(post).as_deref(), Some(statement));

    // Every JSON kind becomes a Trino literal; quotes inside are doubled, never spliced.
    host.connector_ok("lake", "query",
        json!({"statement": "SELECT ?, ?, ?, ?, ?", "params": [true, null, 2.5, "ü'; DROP TABLE t --", {"k": "v'"}]}),
    )
    .await;
    let post = &posts(&seen.all())[1];
    assert_eq!(
        post.body,
        r#"EXECUTE databot_statement USING TRUE, NULL, 2.5, 'ü''; DROP TABLE t --', JSON '{"k":"v''"}'"#
    );
    assert_eq!(
        prepared_statement(post).as_deref(),
        Some("SELECT ?, ?, ?, ?, ?")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_cap_truncates_with_a_notice_and_cancels_the_query() {
    let (port, seen) = serve_scripted(coordinator(vec![(
        "FROM events",
        rows(
            json!([column("id", "bigint"), column("kind", "varchar")]),
            vec![
                json!([[1, "a"], [2, "b"]]),
                json!([[3, "c"], [4, "d"]]),
                json!([[5, "e"]]),
            ],
        ),
    )]))
    .await;
    let host = lake(port, "      max_rows: 2\n").await;

    let out = host
        .connector_ok(
            "lake",
            "query",
            json!({"statement": "SELECT id, kind FROM events"}),
        )
        .await;
    assert_eq!(out["rows"], json!([[1, "a"], [2, "b"]]));
    assert_eq!(out["row_count"], 2);
    assert_eq!(out["truncated"], true);
    let notice = out["notice"].as_str().expect("a notice");
    assert!(
        notice.contains("truncated") && notice.contains("2 rows"),
        "{notice}"
    );
    let requests = seen.all();
    let id = query_id(0);
    assert_eq!(
        trail(&requests),
        vec![
            pair("POST", "/v1/statement".into()),
            pair("GET", format!("/v1/statement/queued/{id}/y0/1")),
            pair("GET", format!("/v1/statement/executing/{id}/y0/1")),
            pair("GET", format!("/v1/statement/executing/{id}/y0/2")),
            pair("DELETE", format!("/v1/statement/executing/{id}/y0/3")),
        ],
        "the rest of the query is cancelled with DELETE on its nextUri, not read"
    );
    let cancel = requests.last().expect("the DELETE");
    assert_eq!(cancel.header("authorization"), Some(BASIC_U_P));
    assert_eq!(cancel.header("x-trino-user"), Some("analyst"));

    // A caller cannot raise the operator's cap; it can lower it.
    let out = host
        .connector_ok(
            "lake",
            "query",
            json!({"statement": "SELECT id, kind FROM events", "max_rows": 100}),
        )
        .await;
    assert_eq!(out["row_count"], 2);
    assert_eq!(out["truncated"], true);
    let out = host
        .connector_ok(
            "lake",
            "query",
            json!({"statement": "SELECT id, kind FROM events", "max_rows": 1}),
        )
        .await;
    assert_eq!(out["rows"], json!([[1, "a"]]));
    assert_eq!(out["truncated"], true);
    let requests = seen.all();
    assert_eq!(
        requests.last().map(|r| r.method.as_str()),
        Some("DELETE"),
        "{:?}",
        trail(&requests)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trino_errors_keep_their_message_and_map_to_error_kinds() {
    let (port, seen) = serve_scripted(coordinator(vec![
        (
            "FROM nope",
            Outcome::Fails(json!({
                "message": "line 1:15: Table 'hive.sales.nope' does not exist",
                "errorCode": 46,
                "errorName": "TABLE_NOT_FOUND",
                "errorType": "USER_ERROR",
                "errorLocation": {"lineNumber": 1, "columnNumber": 15},
                "failureInfo": {
                    "type": "io.trino.spi.TrinoException",
                    "message": "line 1:15: Table 'hive.sales.nope' does not exist",
                    "suppressed": [], "stack": []
                }
            })),
        ),
        (
            "CROSS JOIN",
            Outcome::Fails(json!({
                "message": "Query exceeded distributed user memory limit of 10GB",
                "errorCode": 131073,
                "errorName": "EXCEEDED_GLOBAL_MEMORY_LIMIT",
                "errorType": "INSUFFICIENT_RESOURCES"
            })),
        ),
        ("FROM locked", Outcome::Status(401, "Unauthorized")),
    ]))
    .await;
    let host = lake(port, "").await;

    let error = host
        .connector_err("lake", "query", json!({"statement": "SELECT * FROM nope"}))
        .await;
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(
        error
            .message
            .contains("line 1:15: Table 'hive.sales.nope' does not exist"),
        "{error}"
    );
    assert!(error.message.contains("TABLE_NOT_FOUND"), "{error}");

    let error = host
        .connector_err(
            "lake",
            "query",
            json!({"statement": "SELECT * FROM a CROSS JOIN b"}),
        )
        .await;
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    assert!(error.message.contains("memory limit"), "{error}");

    let error = host
        .connector_err(
            "lake",
            "query",
            json!({"statement": "SELECT * FROM locked"}),
        )
        .await;
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(error.message.contains("Unauthorized"), "{error}");
    assert!(error.message.contains("endpoints.trino.auth"), "{error}");

    // A failed query ends at its FAILED page: nothing else is fetched or cancelled.
    let requests = seen.all();
    assert_eq!(requests.len(), 2 + 2 + 1, "{:?}", trail(&requests));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_sql_policy_refuses_before_any_request() {
    let (port, seen) = serve_scripted(coordinator(Vec::new())).await;
    let host = lake(port, "").await;

    for statement in [
        "DELETE FROM t",
        "SELECT 1; DROP TABLE t",
        "INSERT INTO t SELECT * FROM u",
        "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
        // Query passthrough: table functions that run SQL text in a catalog.
        "SELECT * FROM TABLE(mysql.system.query(query => 'DELETE FROM t'))",
        "SELECT * FROM TABLE(system.query(query => 'DELETE FROM t'))",
        "SELECT * FROM TABLE(query(query => 'DELETE FROM t'))",
        "SELECT * FROM TABLE(pg.system.raw_query(query => 'DELETE FROM t'))",
        "SELECT * FROM TABLE(MYSQL.SYSTEM.QUERY(query => 'DELETE FROM t'))",
        r#"SELECT * FROM TABLE("mysql"."system"."query"(query => 'DELETE FROM t'))"#,
        "SELECT * FROM TABLE(mysql.system.query('DELETE FROM t'))",
        "SELECT * FROM TABLE(es.system.raw_query(schema => 's', index => 'i', query => '{}'))",
        "SELECT * FROM TABLE(mysql.system.query(query => 'SELECT 1')) t JOIN u ON true",
        "SELECT (SELECT count(*) FROM TABLE(mysql.system.query(query => 'x')))",
        "SELECT 1 /* /* */ , query(query => 'x') -- */",
        r#"SELECT U&"query"(query => 'x')"#,
        "SELECT\u{a0}1",
        "SELECT my_catalog.my_schema.my_udf(1)",
        "SELECT 1 /* unterminated",
        // Procedures, session state, DDL and writes on a read-only source.
        "CALL system.flush_metadata_cache()",
        "SET SESSION query_max_run_time = '1h'",
        "RESET SESSION query_max_run_time",
        "START TRANSACTION",
        "EXECUTE IMMEDIATE 'DELETE FROM t'",
        "PREPARE p FROM DELETE FROM t",
        "USE hive.other",
        "CREATE TABLE x AS SELECT * FROM t",
        "DROP TABLE t",
        "ALTER TABLE t ADD COLUMN c int",
        "TRUNCATE TABLE t",
        "UPDATE t SET a = 1",
        "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE",
        "GRANT SELECT ON t TO ROLE public",
        "REFRESH MATERIALIZED VIEW v",
    ] {
        let error = host
            .connector_err("lake", "query", json!({"statement": statement}))
            .await;
        assert_eq!(error.kind, ErrorKind::Denied, "{statement}: {error}");
        assert!(error.message.contains("refused"), "{statement}: {error}");
    }
    let error = host
        .connector_err(
            "lake",
            "query",
            json!({"statement": "DELETE FROM t WHERE id = ?", "params": [1]}),
        )
        .await;
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert!(
        error.message.contains("read-only"),
        "the reason is given: {error}"
    );
    assert!(
        seen.all().is_empty(),
        "no request reached the coordinator: {:?}",
        trail(&seen.all())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_report_the_update_count_where_the_operator_allows_them() {
    let (port, seen) = serve_scripted(coordinator(vec![(
        "INSERT INTO orders",
        Outcome::Updates("INSERT", 1),
    )]))
    .await;
    let host = lake(port, "      writable: true\n").await;

    let info = host.connector_ok("lake", "info", json!({})).await;
    assert_eq!(info["writable"], true);
    let out = host.connector_ok("lake", "query",
        json!({"statement": "INSERT INTO orders (id, region) VALUES (?, ?)", "params": [41, "EMEA"]}),
    )
    .await;
    assert_eq!(out["rows_affected"], 1);
    let post = &posts(&seen.all())[0];
    assert_eq!(post.body, "EXECUTE databot_statement USING 41, 'EMEA'");
    // Still one statement per call, and never DDL.
    let error = host
        .connector_err("lake", "query", json!({"statement": "DROP TABLE orders"}))
        .await;
    assert_eq!(error.kind, ErrorKind::Denied, "{error}");
    assert_eq!(seen.all().len(), 2, "{:?}", trail(&seen.all()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_presto_flavor_uses_presto_headers() {
    let (port, seen) = serve_scripted(coordinator(vec![(
        "FROM orders",
        rows(json!([column("id", "bigint")]), vec![json!([[1], [2]])]),
    )]))
    .await;
    let host = lake(port, "      trino_flavor: presto\n").await;

    let out = host
        .connector_ok(
            "lake",
            "query",
            json!({"statement": "SELECT id FROM orders WHERE id < ?", "params": [3]}),
        )
        .await;
    assert_eq!(out["rows"], json!([[1], [2]]));
    let requests = seen.all();
    assert_eq!(requests.len(), 4, "{:?}", trail(&requests));
    for request in &requests {
        assert_eq!(request.header("authorization"), Some(BASIC_U_P));
        assert_eq!(request.header("x-presto-user"), Some("analyst"));
        assert_eq!(request.header("x-presto-catalog"), Some("hive"));
        assert_eq!(request.header("x-presto-schema"), Some("sales"));
        assert_eq!(request.header("x-presto-source"), Some("databot"));
        assert!(
            !request
                .headers
                .iter()
                .any(|(n, _)| n.starts_with("x-trino-")),
            "{:?}",
            request.headers
        );
    }
    assert_eq!(requests[0].body, "EXECUTE databot_statement USING 3");
    assert_eq!(
        prepared_statement(&requests[0]).as_deref(),
        Some("SELECT id FROM orders WHERE id < ?")
    );

    // An unknown flavor is a configuration error, found before anything is sent.
    let (port, seen) = serve_scripted(coordinator(Vec::new())).await;
    let host = lake(port, "      trino_flavor: starburst\n").await;
    let error = host
        .connector_err("lake", "query", json!({"statement": "SELECT 1"}))
        .await;
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("trino_flavor"), "{error}");
    assert!(seen.all().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_uri_on_another_host_is_refused() {
    let (other_port, other_seen) =
        serve_scripted(|_, _| ScriptedResponse::json(200, json!({"id": "stolen"}))).await;
    let (port, seen) = serve_scripted(move |request, index| {
        let id = query_id(index);
        let next = if request.body.contains("'elsewhere'") {
            format!("http://127.0.0.1:{other_port}/v1/statement/queued/{id}/y0/1")
        } else if request.body.contains("'userinfo'") {
            let own = request.header("host").unwrap_or_default();
            format!("http://{own}@127.0.0.1:{other_port}/v1/statement/queued/{id}/y0/1")
        } else {
            format!("https://localhost:{other_port}/v1/statement/queued/{id}/y0/1")
        };
        let host = request.header("host").unwrap_or_default().to_owned();
        ScriptedResponse::json(
            200,
            Value::Object(results(&host, &id, "QUEUED", Some(next))),
        )
    })
    .await;
    let host = lake(port, "").await;

    for marker in ["elsewhere", "userinfo", "localhost"] {
        let error = host
            .connector_err(
                "lake",
                "query",
                json!({"statement": format!("SELECT '{marker}'")}),
            )
            .await;
        assert_eq!(error.kind, ErrorKind::Failed, "{marker}: {error}");
        assert!(
            error.message.contains("outside the configured endpoint"),
            "{marker}: {error}"
        );
    }
    assert_eq!(seen.all().len(), 3, "{:?}", trail(&seen.all()));
    assert!(
        other_seen.all().is_empty(),
        "nothing was sent to the other host: {:?}",
        trail(&other_seen.all())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_operations_query_trino_metadata_with_bound_names() {
    let (port, seen) = serve_scripted(coordinator(vec![
        (
            "system.metadata.catalogs",
            rows(
                json!([column("name", "varchar")]),
                vec![json!([["hive"], ["system"]]), json!([["tpch"]])],
            ),
        ),
        (
            "information_schema.schemata",
            rows(
                json!([column("name", "varchar")]),
                vec![json!([["default"], ["sales"]])],
            ),
        ),
        (
            "current_schema",
            rows(json!([column("name", "varchar")]), vec![json!([["sales"]])]),
        ),
        (
            "information_schema.tables",
            rows(
                json!([column("name", "varchar"), column("kind", "varchar")]),
                vec![json!([["daily_revenue", "view"], ["orders", "table"]])],
            ),
        ),
        (
            "information_schema.columns",
            rows(
                json!([
                    column("table_name", "varchar"),
                    column("name", "varchar"),
                    column("data_type", "varchar"),
                    column("nullable", "varchar"),
                    column("default_value", "varchar"),
                    column("comment", "varchar")
                ]),
                vec![
                    json!([["orders", "id", "bigint", "NO", null, "order id"]]),
                    json!([
                        ["orders", "region", "varchar", "YES", null, null],
                        ["orders", "amount", "decimal(12,2)", "YES", null, ""]
                    ]),
                ],
            ),
        ),
        (
            "FROM \"sales\".\"orders\" LIMIT",
            rows(
                json!([
                    column("id", "bigint"),
                    column("region", "varchar"),
                    column("amount", "decimal(12,2)")
                ]),
                vec![json!([[1, "EMEA", "10.50"], [2, "APAC", "3.00"]])],
            ),
        ),
    ]))
    .await;
    let host = lake(port, "").await;

    let databases = host.connector_ok("lake", "list_databases", json!({})).await;
    assert_eq!(databases, json!(["hive", "system", "tpch"]));
    let post = &posts(&seen.all())[0];
    assert_eq!(
        post.body,
        "SELECT catalog_name AS name FROM system.metadata.catalogs ORDER BY 1"
    );
    assert_eq!(post.header("x-trino-prepared-statement"), None);

    let schemas = host.connector_ok("lake", "list_schemas", json!({})).await;
    assert_eq!(schemas, json!(["default", "sales"]));

    let tables = host
        .connector_ok("lake", "list_tables", json!({"schema": "sales"}))
        .await;
    assert_eq!(
        tables,
        json!({"schema": "sales", "tables": [
            {"name": "daily_revenue", "kind": "view"},
            {"name": "orders", "kind": "table"}
        ]})
    );
    let post = posts(&seen.all()).pop().expect("a POST");
    assert_eq!(post.body, "EXECUTE databot_statement USING 'sales'");
    let prepared = prepared_statement(&post).expect("a prepared statement");
    assert!(
        prepared.contains("FROM information_schema.tables WHERE table_schema = ?"),
        "{prepared}"
    );

    let before = posts(&seen.all()).len();
    let table = host
        .connector_ok("lake", "describe_table", json!({"table": "orders"}))
        .await;
    assert_eq!(
        table,
        json!({
            "schema": "sales", "name": "orders", "kind": "table",
            "columns": [
                {"name": "id", "data_type": "bigint", "nullable": false, "comment": "order id"},
                {"name": "region", "data_type": "varchar", "nullable": true},
                {"name": "amount", "data_type": "decimal(12,2)", "nullable": true}
            ],
            "primary_key": [], "foreign_keys": []
        })
    );
    let described: Vec<SeenRequest> = posts(&seen.all()).split_off(before);
    let bodies: Vec<&str> = described.iter().map(|p| p.body.as_str()).collect();
    assert_eq!(
        bodies,
        vec![
            "SELECT current_schema AS name",
            "EXECUTE databot_statement USING 'sales'",
            "EXECUTE databot_statement USING 'sales', 'orders', 'orders'",
        ]
    );
    let prepared = prepared_statement(&described[2]).expect("a prepared statement");
    assert!(
        prepared.contains(
            "FROM information_schema.columns WHERE table_schema = ? AND (? IS NULL OR table_name = ?)"
        ),
        "{prepared}"
    );

    let missing = host
        .connector_err(
            "lake",
            "describe_table",
            json!({"table": "nope", "schema": "sales"}),
        )
        .await;
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");

    let sample = host
        .connector_ok(
            "lake",
            "sample",
            json!({"table": "orders", "schema": "sales", "limit": 2}),
        )
        .await;
    assert_eq!(
        sample["rows"],
        json!([[1, "EMEA", "10.50"], [2, "APAC", "3.00"]])
    );
    let post = posts(&seen.all()).pop().expect("a POST");
    assert_eq!(post.body, "SELECT * FROM \"sales\".\"orders\" LIMIT 2");

    let discovery = host
        .connector_ok("lake", "discover_schema", json!({"schema": "sales"}))
        .await;
    assert_eq!(discovery["dialect"], "trino");
    assert!(
        discovery["text"].as_str().is_some_and(|t| t.contains(
            "sales.orders(id bigint NOT NULL /* order id */, region varchar, amount decimal(12,2))"
        )),
        "{discovery}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_runs_select_1_on_the_coordinator() {
    let (port, seen) = serve_scripted(coordinator(vec![(
        "SELECT 1",
        rows(json!([column("_col0", "integer")]), vec![json!([[1]])]),
    )]))
    .await;
    let host = lake(port, "").await;
    let health = host.runtime.connector_health("lake").await.expect("health");
    assert_eq!(health.status, HealthStatus::Healthy, "{}", health.message);
    assert!(health.message.contains("answered"), "{}", health.message);
    let post = &posts(&seen.all())[0];
    assert_eq!(post.body, "SELECT 1");
    assert_eq!(post.header("authorization"), Some(BASIC_U_P));

    // Nobody listening: unreachable, not healthy.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let host = lake(closed, "      max_retries: 0\n").await;
    let health = host.runtime.connector_health("lake").await.expect("health");
    assert_eq!(
        health.status,
        HealthStatus::Unreachable,
        "{}",
        health.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_not_trino_is_an_error_not_an_empty_result() {
    // A proxy or the web UI answering 200 with HTML, or some other JSON service.
    let (port, _seen) = serve_scripted(|request, _| {
        if request.body.contains("'html'") {
            ScriptedResponse {
                status: 200,
                headers: vec![("content-type".into(), "text/html".into())],
                chunks: vec!["<html><body>Trino UI login</body></html>".into()],
                pause: std::time::Duration::ZERO,
            }
        } else {
            ScriptedResponse::json(200, json!({"status": "ok"}))
        }
    })
    .await;
    let host = lake(port, "").await;
    for marker in ["html", "json"] {
        let error = host
            .connector_err(
                "lake",
                "query",
                json!({"statement": format!("SELECT '{marker}'")}),
            )
            .await;
        assert_eq!(error.kind, ErrorKind::Failed, "{marker}: {error}");
        assert!(error.message.contains("not a Trino"), "{marker}: {error}");
    }
    let health = host.runtime.connector_health("lake").await.expect("health");
    assert_ne!(health.status, HealthStatus::Healthy, "{}", health.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_row_cap_is_a_configuration_error_not_a_crash() {
    let (port, seen) = serve_scripted(coordinator(Vec::new())).await;
    let host = lake(port, "      max_rows: 0\n").await;
    let error = host
        .connector_err(
            "lake",
            "query",
            json!({"statement": "SELECT 1", "max_rows": 5}),
        )
        .await;
    assert_eq!(error.kind, ErrorKind::InvalidInput, "{error}");
    assert!(error.message.contains("max_rows"), "{error}");
    assert!(seen.all().is_empty());
}
