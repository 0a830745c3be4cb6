//! Airflow's objects in one shape for both API versions (v1 and v2 name some fields
//! differently), durations from timestamps, and task logs cut to a size.

use serde_json::{Value, json};

use crate::client::Version;

/// A DAG: id, paused/active, schedule, next run, owners, tags.
pub fn dag(dag: &Value, version: Version) -> Value {
    let schedule = match version {
        Version::V1 => match &dag["schedule_interval"] {
            Value::Object(interval) => interval.get("value").cloned().unwrap_or(Value::Null),
            Value::Null => dag["timetable_description"].clone(),
            other => other.clone(),
        },
        Version::V2 => dag
            .get("timetable_summary")
            .cloned()
            .unwrap_or_else(|| dag["timetable_description"].clone()),
    };
    let is_active = match version {
        Version::V1 => dag["is_active"].clone(),
        Version::V2 => dag["is_stale"]
            .as_bool()
            .map_or(Value::Null, |stale| json!(!stale)),
    };
    let next_run = match version {
        Version::V1 => dag["next_dagrun"].clone(),
        Version::V2 => dag["next_dagrun_logical_date"].clone(),
    };
    let tags: Vec<Value> = dag["tags"]
        .as_array()
        .map(|tags| tags.iter().map(|t| t["name"].clone()).collect())
        .unwrap_or_default();
    json!({
        "dag_id": dag["dag_id"],
        "display_name": dag["dag_display_name"],
        "is_paused": dag["is_paused"],
        "is_active": is_active,
        "schedule": schedule,
        "next_run": next_run,
        "owners": dag["owners"],
        "tags": tags,
        "description": dag["description"],
    })
}

/// A DAG run: id, state, logical date (v1 `execution_date` in older servers), times, duration.
pub fn dag_run(run: &Value) -> Value {
    let logical_date = match &run["logical_date"] {
        Value::Null => run["execution_date"].clone(),
        date => date.clone(),
    };
    json!({
        "dag_id": run["dag_id"],
        "run_id": run["dag_run_id"],
        "state": run["state"],
        "run_type": run["run_type"],
        "logical_date": logical_date,
        "start_date": run["start_date"],
        "end_date": run["end_date"],
        "duration_seconds": duration(&run["start_date"], &run["end_date"]),
        "triggered_externally": run.get("external_trigger").cloned().unwrap_or_else(|| json!(run["triggered_by"].as_str().map(|t| t != "scheduler"))),
        "conf": run["conf"],
        "note": run["note"],
    })
}

/// A task instance: task, map index, state, tries, times.
pub fn task_instance(ti: &Value) -> Value {
    json!({
        "task_id": ti["task_id"],
        "map_index": ti["map_index"],
        "state": ti["state"],
        "try_number": ti["try_number"],
        "max_tries": ti["max_tries"],
        "start_date": ti["start_date"],
        "end_date": ti["end_date"],
        "duration_seconds": ti["duration"],
        "operator": ti["operator"],
        "hostname": ti["hostname"],
        "pool": ti["pool"],
        "queue": ti["queue"],
    })
}

/// Seconds between two RFC 3339 timestamps, when both are there.
pub fn duration(start: &Value, end: &Value) -> Value {
    match (
        start.as_str().and_then(epoch_seconds),
        end.as_str().and_then(epoch_seconds),
    ) {
        (Some(s), Some(e)) if e >= s => json!(((e - s) * 1000.0).round() / 1000.0),
        _ => Value::Null,
    }
}

/// Seconds since the Unix epoch of an RFC 3339 timestamp such as
/// `2024-05-01T10:00:00.123456+00:00` or `2024-05-01T10:00:00Z`.
pub fn epoch_seconds(text: &str) -> Option<f64> {
    let (date, rest) = text.split_once(['T', ' '])?;
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(zone_at);
    let mut clock_parts = clock.splitn(3, ':');
    let hour: f64 = clock_parts.next()?.parse().ok()?;
    let minute: f64 = clock_parts.next()?.parse().ok()?;
    let second: f64 = clock_parts.next().unwrap_or("0").parse().ok()?;
    let offset = match zone {
        "" | "Z" | "z" => 0.0,
        _ => {
            let sign = if zone.starts_with('-') { -1.0 } else { 1.0 };
            let (h, m) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
            sign * (h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hour * 3600.0 + minute * 60.0 + second - offset)
}

/// The text of a log response: plain text, v1 JSON `{"content": "..."}`, or v2 structured
/// `{"content": [{"timestamp", "level", "event"}, ...]}`.
pub fn log_text(body: &Value) -> String {
    match body {
        Value::String(text) => text.clone(),
        Value::Object(object) => match object.get("content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(lines)) => lines
                .iter()
                .map(|line| match line {
                    Value::String(text) => text.clone(),
                    entry => {
                        let mut out = String::new();
                        for key in ["timestamp", "level"] {
                            if let Some(v) = entry[key].as_str() {
                                out.push_str(&format!("[{v}] "));
                            }
                        }
                        out.push_str(entry["event"].as_str().unwrap_or_default());
                        out
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
            _ => body.to_string(),
        },
        other => other.to_string(),
    }
}

/// The last `max_bytes` bytes of `text`, starting on a line where one is close, and whether
/// anything was cut.
pub fn tail(text: &str, max_bytes: usize) -> (String, bool) {
    if text.len() <= max_bytes {
        return (text.to_owned(), false);
    }
    let mut start = text.len() - max_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    // Prefer a whole first line if a line break is near the cut.
    let cut = match cut.find('\n') {
        Some(newline) if newline < 512 && newline + 1 < cut.len() => &cut[newline + 1..],
        _ => cut,
    };
    (cut.to_owned(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_with_zones() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            epoch_seconds("2024-05-01T10:00:00+00:00"),
            Some(1_714_557_600.0)
        );
        assert_eq!(
            epoch_seconds("2024-05-01T12:00:00+02:00"),
            Some(1_714_557_600.0)
        );
        let d = duration(
            &json!("2024-05-01T10:00:00.250000+00:00"),
            &json!("2024-05-01T10:01:30.750000+00:00"),
        );
        assert_eq!(d, json!(90.5));
        assert_eq!(
            duration(&json!("2024-05-01T10:00:00Z"), &Value::Null),
            Value::Null
        );
        assert_eq!(epoch_seconds("yesterday"), None);
    }

    #[test]
    fn logs_are_cut_from_the_end_on_a_line() {
        let text = "line one\nline two\nline three\n";
        assert_eq!(tail(text, 100), (text.to_owned(), false));
        let (cut, truncated) = tail(text, 15);
        assert!(truncated);
        assert_eq!(cut, "line three\n");
        let (cut, _) = tail("ééé", 3);
        assert_eq!(cut, "é");
    }

    #[test]
    fn structured_logs_become_lines() {
        let v2 = json!({"content": [
            {"timestamp": "2024-05-01T10:00:00Z", "level": "info", "event": "Task started"},
            {"event": "::group::Log message source details"}
        ], "continuation_token": null});
        assert_eq!(
            log_text(&v2),
            "[2024-05-01T10:00:00Z] [info] Task started\n::group::Log message source details"
        );
        assert_eq!(log_text(&json!({"content": "a\nb"})), "a\nb");
        assert_eq!(log_text(&json!("plain")), "plain");
    }

    #[test]
    fn dags_of_both_versions_look_the_same() {
        let v1 = json!({"dag_id": "etl", "is_paused": false, "is_active": true,
            "schedule_interval": {"__type": "CronExpression", "value": "0 2 * * *"},
            "next_dagrun": "2024-05-02T02:00:00+00:00", "tags": [{"name": "prod"}]});
        let v2 = json!({"dag_id": "etl", "is_paused": false, "is_stale": false,
            "timetable_summary": "0 2 * * *", "next_dagrun_logical_date": "2024-05-02T02:00:00Z",
            "tags": [{"name": "prod", "dag_id": "etl"}]});
        let (a, b) = (dag(&v1, Version::V1), dag(&v2, Version::V2));
        assert_eq!(a["schedule"], "0 2 * * *");
        assert_eq!(b["schedule"], "0 2 * * *");
        assert_eq!(a["is_active"], true);
        assert_eq!(b["is_active"], true);
        assert_eq!(a["tags"], json!(["prod"]));
        assert_eq!(b["tags"], json!(["prod"]));
    }
}
