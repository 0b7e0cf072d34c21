//! The suite's table: printed as text, and as Markdown between two HTML
//! comment markers of a document, so re-running the suite replaces only it.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

pub const BEGIN_MARKER: &str = "<!-- faults-table:begin -->";
pub const END_MARKER: &str = "<!-- faults-table:end -->";

/// One scenario's outcome.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: &'static str,
    /// The faults injected, in words ("150 SIGKILLs of ingest").
    pub faults: String,
    /// Events the relay sent (its head seq at the end).
    pub sent: u64,
    /// The index's committed watermark at the end.
    pub indexed: i64,
    /// Events never in the stream, plus those the index never committed.
    pub lost: u64,
    /// The same seq written twice within one life of the Redis data.
    pub duplicated: u64,
    /// Events written again after Redis lost its data (expected, harmless).
    pub replayed: u64,
    /// From the end of the last fault until the index had committed
    /// everything the relay had sent by then.
    pub recovery: Duration,
    pub peak_rss_kb: u64,
    /// The database against the ground truth.
    pub database: String,
    /// `None` when everything held; otherwise what did not.
    pub problem: Option<String>,
}

impl Row {
    pub fn passed(&self) -> bool {
        self.problem.is_none()
    }
}

const HEADERS: [&str; 11] = [
    "scenario",
    "faults",
    "sent",
    "indexed",
    "lost",
    "duplicated",
    "replayed",
    "recovery",
    "peak RSS",
    "database vs truth",
    "result",
];

fn cells(row: &Row) -> [String; 11] {
    [
        row.scenario.to_owned(),
        row.faults.clone(),
        row.sent.to_string(),
        row.indexed.to_string(),
        row.lost.to_string(),
        row.duplicated.to_string(),
        row.replayed.to_string(),
        format!("{:.1} s", row.recovery.as_secs_f64()),
        format!("{:.0} MB", row.peak_rss_kb as f64 / 1024.0),
        row.database.clone(),
        if row.passed() { "pass" } else { "FAIL" }.to_owned(),
    ]
}

/// The table as aligned text for the terminal.
pub fn text(rows: &[Row]) -> String {
    let all: Vec<[String; 11]> = rows.iter().map(cells).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &all {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(&HEADERS.map(str::to_owned));
    out.push('\n');
    for row in &all {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// The table as Markdown, with the command that produced it.
pub fn markdown(rows: &[Row], command: &str, wall: Duration) -> String {
    let mut out = format!(
        "`{command}` — {} scenarios, {:.1} minutes on this machine:\n\n",
        rows.len(),
        wall.as_secs_f64() / 60.0
    );
    out.push_str(&format!("| {} |\n", HEADERS.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(HEADERS.len())));
    for row in rows {
        out.push_str(&format!("| {} |\n", cells(row).join(" | ")));
    }
    out
}

/// Replaces what lies between the markers in `path` with `table`.
pub fn write_docs(path: &Path, table: &str) -> anyhow::Result<()> {
    let doc = std::fs::read_to_string(path)
        .with_context(|| format!("reading {} to update its table", path.display()))?;
    let updated = replace_between_markers(&doc, table)
        .with_context(|| format!("updating {}", path.display()))?;
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

fn replace_between_markers(doc: &str, table: &str) -> anyhow::Result<String> {
    let Some(begin) = doc.find(BEGIN_MARKER) else {
        bail!("the document has no {BEGIN_MARKER} line to put the table after");
    };
    let after_begin = begin + BEGIN_MARKER.len();
    let Some(end) = doc[after_begin..].find(END_MARKER).map(|i| i + after_begin) else {
        bail!("the document has {BEGIN_MARKER} but no {END_MARKER} after it");
    };
    Ok(format!("{}\n{}{}", &doc[..after_begin], table, &doc[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_marked_section_is_replaced() {
        let doc = format!("intro\n{BEGIN_MARKER}\nold\n{END_MARKER}\noutro\n");
        let out = replace_between_markers(&doc, "new\n").unwrap();
        assert_eq!(
            out,
            format!("intro\n{BEGIN_MARKER}\nnew\n{END_MARKER}\noutro\n")
        );
        assert!(replace_between_markers("no markers", "x").is_err());
        assert!(replace_between_markers(BEGIN_MARKER, "x").is_err());
    }
}
