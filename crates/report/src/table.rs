//! A small tabular model shared by every export: named columns, typed cells, written as CSV
//! or JSON with numbers in shortest round-trip form.

use std::io::Write;

use sweep_core::value::format_float;
use sweep_core::ParamValue;

use crate::ExportError;

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value (an empty CSV cell, JSON `null`).
    Empty,
    /// Text.
    Text(String),
    /// A whole number.
    Int(i64),
    /// A real number; a non-finite one is written `NaN` in CSV and `null` in JSON.
    Num(f64),
    /// A boolean.
    Bool(bool),
}

impl From<&ParamValue> for Cell {
    fn from(v: &ParamValue) -> Cell {
        match v {
            ParamValue::Bool(b) => Cell::Bool(*b),
            ParamValue::Int(i) => Cell::Int(*i),
            ParamValue::Float(f) => Cell::Num(*f),
            ParamValue::Str(s) => Cell::Text(s.clone()),
        }
    }
}

impl Cell {
    fn csv(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Num(f) if f.is_finite() => format_float(*f),
            Cell::Num(_) => "NaN".to_string(),
            Cell::Bool(b) => b.to_string(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Empty => serde_json::Value::Null,
            Cell::Text(s) => serde_json::Value::String(s.clone()),
            Cell::Int(i) => serde_json::Value::from(*i),
            Cell::Num(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Cell::Bool(b) => serde_json::Value::Bool(*b),
        }
    }
}

/// Columns and rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Column names, in output order.
    pub columns: Vec<String>,
    /// Rows, each with one cell per column.
    pub rows: Vec<Vec<Cell>>,
}

/// How a table is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableFormat {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// A JSON array of objects, keys in column order.
    Json,
}

impl Table {
    /// Writes the table.
    pub fn write(&self, format: TableFormat, out: impl Write) -> Result<(), ExportError> {
        let mut w = TableWriter::new(format, self.columns.clone(), out)?;
        for row in &self.rows {
            w.row(row)?;
        }
        w.finish()
    }
}

/// Writes a table row by row, so an export of millions of trials needs no more memory than
/// one row.
pub struct TableWriter<W: Write> {
    columns: Vec<String>,
    sink: Sink<W>,
}

enum Sink<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Json {
        out: std::io::BufWriter<W>,
        rows: usize,
    },
}

impl<W: Write> TableWriter<W> {
    /// Starts the output (the CSV header, or the opening bracket).
    pub fn new(format: TableFormat, columns: Vec<String>, out: W) -> Result<Self, ExportError> {
        let sink = match format {
            TableFormat::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(&columns)?;
                Sink::Csv(Box::new(w))
            }
            TableFormat::Json => {
                let mut out = std::io::BufWriter::new(out);
                out.write_all(b"[")?;
                Sink::Json { out, rows: 0 }
            }
        };
        Ok(TableWriter { columns, sink })
    }

    /// Writes one row (one cell per column).
    pub fn row(&mut self, cells: &[Cell]) -> Result<(), ExportError> {
        match &mut self.sink {
            Sink::Csv(w) => w.write_record(cells.iter().map(Cell::csv))?,
            Sink::Json { out, rows } => {
                let object: serde_json::Map<String, serde_json::Value> = self
                    .columns
                    .iter()
                    .cloned()
                    .zip(cells.iter().map(Cell::json))
                    .collect();
                out.write_all(if *rows == 0 { b"\n  " } else { b",\n  " })?;
                serde_json::to_writer(&mut *out, &object).map_err(std::io::Error::from)?;
                *rows += 1;
            }
        }
        Ok(())
    }

    /// Ends the output and flushes it.
    pub fn finish(self) -> Result<(), ExportError> {
        match self.sink {
            Sink::Csv(mut w) => w.flush()?,
            Sink::Json { mut out, .. } => {
                out.write_all(b"\n]\n")?;
                out.flush()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_csv_and_json_with_shortest_numbers() {
        let table = Table {
            columns: vec!["a".into(), "b".into(), "c".into()],
            rows: vec![
                vec![Cell::Num(0.1), Cell::Num(f64::NAN), Cell::Empty],
                vec![Cell::Int(3), Cell::Text("x,y".into()), Cell::Bool(true)],
            ],
        };
        let mut csv = Vec::new();
        table.write(TableFormat::Csv, &mut csv).unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "a,b,c\n0.1,NaN,\n3,\"x,y\",true\n"
        );
        let mut json = Vec::new();
        table.write(TableFormat::Json, &mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"a": 0.1, "b": null, "c": null}, {"a": 3, "b": "x,y", "c": true}])
        );
    }
}
