//! One self-contained HTML page: the plot and a sortable table of every configuration. No
//! external scripts, styles or fonts, so it can be mailed or attached to a paper's artifacts.

use std::fmt::Write;

use crate::front::FrontReport;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page, with `svg` (from [`crate::plot::plot_svg`]) inlined.
pub fn html_page(report: &FrontReport, svg: &str, title: &str) -> String {
    let params = report.param_names();
    let shares = report.has_front_shares();
    let mut rows = String::new();
    for r in &report.ranked {
        let class = if r.rank == 1 { " class=\"front\"" } else { "" };
        let _ = write!(rows, "<tr{class}><td data-v=\"{}\">{}</td>", r.rank, r.rank);
        if shares {
            let _ = write!(rows, "<td>{}</td>", r.front_share_text());
        }
        for p in &params {
            let v = r.param_text(p);
            let _ = write!(rows, "<td data-v=\"{}\">{}</td>", escape(&v), escape(&v));
        }
        for o in &report.objectives {
            let s = r.config.stats[&o.metric];
            let shown = if s.n > 1 {
                format!("{:.4} ± {:.4} (n={})", s.mean, s.std, s.n)
            } else {
                format!("{:.4} (n=1)", s.mean)
            };
            let _ = write!(rows, "<td data-v=\"{}\">{shown}</td>", s.mean);
        }
        rows.push_str("</tr>\n");
    }
    let mut head = String::from("<th>rank</th>");
    if shares {
        head.push_str("<th>on front</th>");
    }
    for p in &params {
        let _ = write!(head, "<th>{}</th>", escape(p));
    }
    for o in &report.objectives {
        let _ = write!(head, "<th>{} (mean ± std)</th>", escape(&o.to_string()));
    }
    let excluded: String = report
        .excluded
        .iter()
        .map(|(why, n)| format!("<li>{n} trial(s) excluded: {}</li>", escape(why)))
        .collect();
    let hv = report
        .hypervolume
        .as_ref()
        .map(|(v, r)| format!("<p>Hypervolume of the front: {v:.6} (reference {r:?}).</p>"))
        .unwrap_or_default();
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
th, td {{ border-bottom: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th {{ cursor: pointer; background: #f4f4f4; user-select: none; }}
th:after {{ content: " \2195"; color: #999; }}
tr.front td {{ font-weight: bold; }}
</style></head><body>
<h1>{title}</h1>
{svg}
{hv}
<ul>{excluded}</ul>
<p>Bold rows are on the Pareto front. Click a column header to sort.</p>
<table id="configs"><thead><tr>{head}</tr></thead><tbody>
{rows}</tbody></table>
<script>
document.querySelectorAll('#configs th').forEach((th, col) => th.addEventListener('click', () => {{
  const body = document.querySelector('#configs tbody');
  const asc = th.dataset.asc !== 'true'; th.dataset.asc = asc;
  const key = tr => {{ const c = tr.children[col]; const v = c.dataset.v ?? c.textContent; const n = parseFloat(v); return isNaN(n) ? v : n; }};
  [...body.rows].sort((a, b) => {{ const x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1); }})
    .forEach(tr => body.appendChild(tr));
}}));
</script>
</body></html>
"#,
        title = escape(title)
    )
}
