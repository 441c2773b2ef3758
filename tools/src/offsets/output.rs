//! Output: aligned text tables for people, JSON for scripts, and the rendering of record
//! bytes and timestamps shared by `replay` and `log dump --records`.

use std::io::Write;

use base64::Engine;
use serde_json::{json, Map, Value};

use super::error::Result;

/// A text table: a header row and rows of cells, printed with columns padded to the widest
/// cell. Numeric-looking columns are right-aligned.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the table to `out`.
    pub fn print(&self, out: &mut impl Write) -> Result<()> {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        let mut numeric = vec![true; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
                if !(cell == "-" || cell.parse::<f64>().is_ok()) {
                    numeric[i] = false;
                }
            }
        }
        let line = |cells: &[String]| -> String {
            let mut s = String::new();
            for (i, cell) in cells.iter().enumerate().take(columns) {
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i > 0 {
                    s.push_str("  ");
                }
                if numeric[i] {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                } else {
                    s.push_str(cell);
                    if i + 1 < columns {
                        s.push_str(&" ".repeat(pad));
                    }
                }
            }
            s.trim_end().to_string()
        };
        writeln!(out, "{}", line(&self.headers))?;
        for row in &self.rows {
            writeln!(out, "{}", line(row))?;
        }
        Ok(())
    }
}

/// Writes one JSON value as a line.
pub fn print_json(out: &mut impl Write, value: &Value) -> Result<()> {
    writeln!(out, "{value}")?;
    Ok(())
}

/// `Some(n)` as `n`, `None` as `-` (table cells).
pub fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds (`-` for -1/invalid).
pub fn format_ms(ms: i64) -> String {
    if ms < 0 {
        return "-".to_string();
    }
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// Inserts `bytes` into a JSON object as `name` (a string when the bytes are valid UTF-8,
/// `null` when absent) or, for other bytes, as `name_base64` (standard base64 with
/// padding). Exactly one of the two keys is present.
pub fn put_bytes(obj: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            obj.insert(name.to_string(), Value::Null);
        }
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => {
                obj.insert(name.to_string(), Value::String(s.to_string()));
            }
            Err(_) => {
                obj.insert(
                    format!("{name}_base64"),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
                );
            }
        },
    }
}

/// Bytes for a human: the UTF-8 text (escaped like a Rust string when it has control
/// characters), `null`, or `base64:<...>`.
pub fn human_bytes(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".to_string(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
            Ok(s) => format!("{s:?}"),
            Err(_) => format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            ),
        },
    }
}

/// A decoded record, as `replay` and `log dump --records` print it.
pub struct RecordView<'a> {
    pub topic: Option<&'a str>,
    pub partition: Option<i32>,
    pub offset: i64,
    pub timestamp: i64,
    pub log_append_time: bool,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

impl RecordView<'_> {
    /// The JSON line form: `topic`, `partition`, `offset`, `timestamp` (ms),
    /// `timestamp_type`, `key`/`key_base64`, `value`/`value_base64`, `headers`
    /// (`[{"key": .., "value"|"value_base64": ..}]`).
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        if let Some(t) = self.topic {
            obj.insert("topic".into(), json!(t));
        }
        if let Some(p) = self.partition {
            obj.insert("partition".into(), json!(p));
        }
        obj.insert("offset".into(), json!(self.offset));
        obj.insert("timestamp".into(), json!(self.timestamp));
        obj.insert(
            "timestamp_type".into(),
            json!(if self.log_append_time {
                "LogAppendTime"
            } else {
                "CreateTime"
            }),
        );
        put_bytes(&mut obj, "key", self.key);
        put_bytes(&mut obj, "value", self.value);
        let headers: Vec<Value> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let mut h = Map::new();
                h.insert("key".into(), json!(k));
                put_bytes(&mut h, "value", *v);
                Value::Object(h)
            })
            .collect();
        obj.insert("headers".into(), Value::Array(headers));
        Value::Object(obj)
    }

    /// One human line: `partition offset time key=.. value=.. [headers]`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        if let Some(p) = self.partition {
            s.push_str(&format!("p{p} "));
        }
        s.push_str(&format!(
            "@{} {} key={} value={}",
            self.offset,
            format_ms(self.timestamp),
            human_bytes(self.key),
            human_bytes(self.value)
        ));
        for (k, v) in &self.headers {
            s.push_str(&format!(" {k}:{}", human_bytes(*v)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_render_as_utf8_or_base64() {
        let mut obj = Map::new();
        put_bytes(&mut obj, "key", Some(b"abc"));
        put_bytes(&mut obj, "value", Some(&[0xff, 0x00, 0x10]));
        put_bytes(&mut obj, "none", None);
        assert_eq!(
            Value::Object(obj).to_string(),
            r#"{"key":"abc","none":null,"value_base64":"/wAQ"}"#
        );
        assert_eq!(human_bytes(Some(&[0xff])), "base64:/w==");
        assert_eq!(human_bytes(Some(b"a\nb")), "\"a\\nb\"");
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["TOPIC", "LAG"]);
        t.row(vec!["orders".into(), "5".into()]);
        t.row(vec!["x".into(), "120".into()]);
        let mut out = Vec::new();
        t.print(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "TOPIC   LAG\norders    5\nx       120\n"
        );
    }
}
