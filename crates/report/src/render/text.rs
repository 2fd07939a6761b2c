//! `--format table` (aligned text for a terminal, with the notes a reader needs) and
//! `--format markdown` (GitHub-flavoured tables, for a README or an issue).

use std::io::Write;

use sweep_core::value::{format_float, params_to_json};

use super::{confirmed_text, plus_minus, rounded, Exporter, FrontView, SelectionView};
use crate::compare::{comparison_cells, num, p_text, ComparisonReport};
use crate::confirm::ConfirmReport;
use crate::ExportError;

/// The text writer: aligned columns, or Markdown.
pub(super) struct Text {
    /// Markdown tables instead of aligned columns.
    pub markdown: bool,
}

impl Text {
    /// Writes `header` and `body` as a GitHub Markdown table, or as aligned text.
    fn table(
        &self,
        header: &[String],
        body: &[Vec<String>],
        out: &mut dyn Write,
    ) -> Result<(), ExportError> {
        if self.markdown {
            writeln!(out, "| {} |", header.join(" | "))?;
            writeln!(out, "|{}", "---|".repeat(header.len()))?;
            for row in body {
                writeln!(out, "| {} |", row.join(" | "))?;
            }
            return Ok(());
        }
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in body {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        for row in std::iter::once(header).chain(body.iter().map(Vec::as_slice)) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            writeln!(out, "{}", line.join("  ").trim_end())?;
        }
        Ok(())
    }
}

impl Exporter for Text {
    fn front(&self, front: &FrontView, out: &mut dyn Write) -> Result<(), ExportError> {
        let (report, params) = (front.report, &front.params);
        let shares = report.has_front_shares();
        let mut header = vec!["rank".to_string()];
        if shares {
            header.push("on front".into());
        }
        header.push("n".into());
        header.extend(params.iter().cloned());
        // The spread over replicates is a standard deviation here (`--best` prints 95 %
        // intervals, and says so); a configuration of one trial has none.
        header.extend(
            report
                .objectives
                .iter()
                .map(|o| format!("{o} (mean ± std)")),
        );
        let body: Vec<Vec<String>> = front
            .rows
            .iter()
            .map(|r| {
                let mut cells = vec![r.rank.to_string()];
                if shares {
                    cells.push(r.front_share_text());
                }
                cells.push(r.config.trials.len().to_string());
                cells.extend(params.iter().map(|p| r.param_text(p)));
                cells.extend(report.objectives.iter().map(|o| {
                    let s = r.config.stats[&o.metric];
                    plus_minus(s.mean, s.std, s.n)
                }));
                cells
            })
            .collect();
        self.table(&header, &body, out)?;
        if let Some((hv, reference)) = &report.hypervolume {
            let r: Vec<String> = reference.iter().map(|x| rounded(*x)).collect();
            writeln!(
                out,
                "\nhypervolume of the front: {} (reference {})",
                rounded(*hv),
                r.join(", ")
            )?;
        }
        for (why, n) in &report.excluded {
            writeln!(out, "excluded: {n} trial(s), {why}")?;
        }
        Ok(())
    }

    fn selection(&self, view: &SelectionView, out: &mut dyn Write) -> Result<(), ExportError> {
        let (header, body) = view.cells();
        self.table(&header, &body, out)?;
        if self.markdown {
            return Ok(());
        }
        let halves = &view.selection.halves;
        writeln!(
            out,
            "\nchosen on {} prompts, reported on {} prompts (n: trials averaged)",
            if halves.choose.is_empty() {
                "all"
            } else {
                "validation"
            },
            if halves.report.is_empty() {
                "the same"
            } else {
                "held-out test"
            },
        )?;
        for ch in &view.selection.choices {
            for (c, v) in &ch.bounds {
                writeln!(out, "{}: {c} is {}", ch.sweep, format_float(*v))?;
            }
        }
        Ok(())
    }

    fn comparison(
        &self,
        report: &ComparisonReport,
        out: &mut dyn Write,
    ) -> Result<(), ExportError> {
        if self.markdown {
            writeln!(
                out,
                "| {} | A: {} | B: {} | A − B | 95 % interval | only A / only B | McNemar p |\n\
                 |---|---|---|---|---|---|---|\n| {} |",
                report.metric,
                report.a.label,
                report.b.label,
                comparison_cells(report).join(" | ")
            )?;
            return Ok(());
        }
        let c = &report.comparison;
        let replicates: Vec<String> = report
            .strata
            .iter()
            .map(|(l, n)| format!("{l} ({n})"))
            .collect();
        writeln!(
            out,
            "{m}, paired prompt by prompt within {r} replicate(s): {reps}\n\
             A  {al:<40} {ra}   {ap}\n\
             B  {bl:<40} {rb}   {bp}\n\
             A - B  {d}   95 % interval [{lo}, {hi}] (two-level bootstrap: replicates, then prompts; {s} resamples)\n\
             prompts counted under A only: {oa}, under B only: {ob}; exact McNemar p = {p}",
            m = report.metric,
            r = report.strata.len(),
            reps = replicates.join(", "),
            al = report.a.label,
            bl = report.b.label,
            ra = num(c.rate_a),
            rb = num(c.rate_b),
            ap = params_to_json(&report.a.params),
            bp = params_to_json(&report.b.params),
            d = num(c.difference),
            lo = num(c.ci95.0),
            hi = num(c.ci95.1),
            s = c.resamples,
            oa = c.only_a,
            ob = c.only_b,
            p = p_text(c.p_value),
        )?;
        if !report.unpaired.is_empty() {
            writeln!(
                out,
                "left out (run by one side only): {}",
                report.unpaired.join(", ")
            )?;
        }
        Ok(())
    }

    /// The two configurations on their new seeds, then (where answers were kept) their
    /// prompt-level comparison.
    fn confirmation(&self, report: &ConfirmReport, out: &mut dyn Write) -> Result<(), ExportError> {
        let seeds: Vec<String> = report.seeds.iter().map(i64::to_string).collect();
        let title = format!(
            "{} on new seeds {:?} (sweep {}; chosen in sweep {}, whose trials took no part here)",
            report.metric, report.seeds, report.sweep, report.original
        );
        if self.markdown {
            writeln!(out, "{title}\n")?;
        } else {
            writeln!(out, "{title}")?;
        }
        let header = [
            "role".to_string(),
            format!(
                "{} (± 95 % CI over seeds {})",
                report.metric,
                seeds.join(", ")
            ),
            "n".to_string(),
            "parameters".to_string(),
        ];
        let body: Vec<Vec<String>> = report
            .configs
            .iter()
            .map(|c| {
                vec![
                    c.role.to_string(),
                    confirmed_text(c.stat.as_ref()),
                    c.stat.map_or(0, |s| s.n).to_string(),
                    params_to_json(&c.params),
                ]
            })
            .collect();
        self.table(&header, &body, out)?;
        if let Some(paired) = &report.paired {
            writeln!(out)?;
            self.comparison(paired, out)?;
        }
        Ok(())
    }
}
