//! Charts as server-rendered SVG, each with its numbers beside it for screen readers: a column chart for counts
//! over time, and a table of horizontal bars for counts by name (a table people and screen readers both read).

use maud::{Markup, html};

/// The column chart's drawing size, in SVG units (it scales to the page's width).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;

/// Columns for `points` (label, count), oldest first: an SVG picture, each column titled with its numbers, and the
/// same numbers as a table that only screen readers see.
pub fn columns(title: &str, points: &[(String, u64)]) -> Markup {
    let max = points.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1) as f64;
    let total: u64 = points.iter().map(|(_, n)| n).sum();
    let step = WIDTH / points.len().max(1) as f64;
    let summary = format!("{title}: {total} in all, at most {} in one", max as u64);
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(summary) preserveAspectRatio="none" {
                line.axis x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
                @for (i, (label, count)) in points.iter().enumerate() {
                    @let height = (*count as f64 / max * (HEIGHT - 4.0)).max(if *count > 0 { 1.5 } else { 0.0 });
                    rect.bar x=(format!("{:.1}", i as f64 * step + step * 0.1)) y=(format!("{:.1}", HEIGHT - height))
                        width=(format!("{:.1}", step * 0.8)) height=(format!("{height:.1}")) {
                        title { (label) ": " (count) }
                    }
                }
            }
            // The first and last labels under the columns (as HTML: the picture stretches to the page's width).
            @if let (Some((first, _)), Some((last, _))) = (points.first(), points.last()) {
                div.ticks aria-hidden="true" { span { (first) } span { (last) } }
            }
            figcaption { (summary) }
            table.sr-only {
                caption { (title) }
                thead { tr { th scope="col" { "When" } th scope="col" { "Tickets" } } }
                tbody { @for (label, count) in points { tr { th scope="row" { (label) } td { (count) } } } }
            }
        }
    }
}

/// A table of `items` (name, count), most first, each with a bar as long as its share of the largest.
pub fn bars(name: &str, items: &[(String, u64)]) -> Markup {
    let max = items.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1) as f64;
    html! {
        @if items.is_empty() {
            p.empty { "None yet." }
        } @else {
            table.bars {
                thead { tr { th scope="col" { (name) } th scope="col" { "Tickets" } th scope="col" aria-hidden="true" {} } }
                tbody {
                    @for (label, count) in items {
                        tr {
                            th scope="row" { (label) }
                            td.number { (count) }
                            td aria-hidden="true" {
                                svg.bar viewBox="0 0 100 10" preserveAspectRatio="none" {
                                    rect x="0" y="0" height="10" width=(format!("{:.1}", *count as f64 / max * 100.0)) {}
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_chart_carries_its_numbers_for_screen_readers() {
        let chart = columns("Per day", &[("2026-12-01".into(), 3), ("2026-12-02".into(), 0)]).into_string();
        assert!(chart.contains(r#"aria-label="Per day: 3 in all, at most 3 in one""#), "{chart}");
        assert!(chart.contains("<th scope=\"row\">2026-12-01</th><td>3</td>"), "{chart}");
        assert!(chart.contains("<title>2026-12-02: 0</title>"));
    }

    #[test]
    fn bars_scale_to_the_largest_and_escape_names() {
        let table = bars("Label", &[("<vip>".into(), 4), ("b".into(), 1)]).into_string();
        assert!(table.contains("&lt;vip&gt;"));
        assert!(table.contains(r#"width="100.0""#) && table.contains(r#"width="25.0""#), "{table}");
        assert!(bars("Label", &[]).into_string().contains("None yet."));
    }
}
