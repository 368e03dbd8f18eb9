//! The report's charts, drawn with plotters' SVG backend from series computed here.
//!
//! Contract (what the series guarantee, tested below at the level of the plotted values):
//! - time runs over fixed buckets spanning the whole capture (first to last packet), with clock
//!   labels (HH:MM, or HH:MM:SS on short captures) in the report's zone, named on the axis;
//! - concurrency is a step plot of the highest level in each bucket, carried forward from the
//!   exact step function of `figures` (a bucket without events keeps the level of the one before:
//!   no false zeros), a call open at the end of the capture lasts to its end, and the line's
//!   highest level is drawn as the ceiling;
//! - the call timeline draws each call as a bar from its start to its end on a channel row
//!   (the first row free at its start, so the rows used equal the highest concurrency), coloured
//!   by outcome.

use super::provenance::Clock;
use crate::figures::{concurrency_steps, Span};
use plotters::prelude::*;
use simboxd_core::model::{CallRecord, Outcome, Timestamp};
use std::fmt::Write as _;

/// Buckets over the capture span at most.
pub const MAX_BUCKETS: usize = 600;
/// Calls drawn per line timeline (the rest are counted in the caption).
pub const MAX_TIMELINE_BARS: usize = 400;
const W: u32 = 1000;

/// Outcomes in legend order with their colours.
pub const OUTCOMES: [(Outcome, &str, RGBColor); 6] = [
    (Outcome::Answered, "answered", RGBColor(0x2e, 0x7d, 0x32)),
    (Outcome::Busy, "busy", RGBColor(0xf9, 0xa8, 0x25)),
    (Outcome::NoAnswer, "no answer", RGBColor(0xef, 0x6c, 0x00)),
    (Outcome::Cancelled, "cancelled", RGBColor(0x8e, 0x24, 0xaa)),
    (Outcome::Failed, "failed", RGBColor(0xc6, 0x28, 0x28)),
    (
        Outcome::Incomplete,
        "open / incomplete",
        RGBColor(0x75, 0x75, 0x75),
    ),
];

fn outcome_index(o: Outcome) -> usize {
    OUTCOMES.iter().position(|x| x.0 == o).unwrap_or(5)
}

/// The capture's time frame: fixed buckets from the first to the last packet.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub t0: Timestamp,
    pub t1: Timestamp,
    /// Bucket width in seconds (a round figure: 1 s, 5 s, 10 s, 30 s, 1 min, ...).
    pub width: f64,
    pub buckets: usize,
}

impl Frame {
    pub fn new(t0: Timestamp, t1: Timestamp) -> Frame {
        let span = t1.secs_since(t0).max(1.0);
        const NICE: [f64; 14] = [
            1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
            7200.0,
        ];
        let width = NICE
            .iter()
            .copied()
            .find(|w| span / w <= MAX_BUCKETS as f64)
            .unwrap_or_else(|| (span / MAX_BUCKETS as f64).ceil());
        let buckets = ((span / width).ceil() as usize).clamp(1, MAX_BUCKETS + 1);
        Frame {
            t0,
            t1,
            width,
            buckets,
        }
    }

    pub fn span(&self) -> f64 {
        self.width * self.buckets as f64
    }

    fn index(&self, t: Timestamp) -> usize {
        let x = t.secs_since(self.t0) / self.width;
        (x.max(0.0) as usize).min(self.buckets - 1)
    }

    pub fn width_label(&self) -> String {
        if self.width >= 60.0 {
            format!("{:.0} min", self.width / 60.0)
        } else {
            format!("{:.0} s", self.width)
        }
    }
}

/// Concurrency per bucket: the highest number of calls in progress at any instant of the bucket,
/// the level at its start carried forward from the exact step function.
pub fn concurrency_buckets(spans: &[Span], f: &Frame) -> Vec<u32> {
    let steps = concurrency_steps(spans, f.t0, f.t1);
    let mut out = vec![0u32; f.buckets];
    let mut level = 0u32;
    let mut k = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        let last = i + 1 == f.buckets;
        let start = f.t0.plus_secs(i as f64 * f.width);
        let end = f.t0.plus_secs((i + 1) as f64 * f.width);
        // The level at the bucket's start: carried forward, including changes at that instant.
        while k < steps.len() && steps[k].0 <= start {
            level = steps[k].1;
            k += 1;
        }
        let mut m = level;
        while k < steps.len() && (steps[k].0 < end || last) {
            level = steps[k].1;
            // The drop at the capture's last packet closes open calls; it is no bucket's level.
            if steps[k].0 < f.t1 {
                m = m.max(level);
            }
            k += 1;
        }
        *slot = m;
    }
    out
}

/// One call on the timeline: seconds from the capture start, channel row from 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar {
    pub row: u32,
    pub start: f64,
    pub end: f64,
    pub outcome: Outcome,
    /// Still open at the end of the capture (drawn to its end).
    pub open: bool,
}

/// Timeline bars, each call on the first row free at its start (ends free a row before starts
/// at the same instant take it).
pub fn timeline_bars(calls: &[&CallRecord], f: &Frame) -> Vec<Bar> {
    let mut idx: Vec<usize> = (0..calls.len()).collect();
    idx.sort_by_key(|&i| (calls[i].start, i));
    let mut row_free_at: Vec<f64> = Vec::new();
    let mut bars = Vec::with_capacity(calls.len());
    for i in idx {
        let c = calls[i];
        let start = c.start.secs_since(f.t0).max(0.0);
        let end = c.end.unwrap_or(f.t1).secs_since(f.t0).max(start);
        let row = match row_free_at.iter().position(|&free| free <= start) {
            Some(r) => r,
            None => {
                row_free_at.push(0.0);
                row_free_at.len() - 1
            }
        };
        if let Some(slot) = row_free_at.get_mut(row) {
            // A zero-length call still holds its row for that instant only.
            *slot = end;
        }
        bars.push(Bar {
            row: row as u32,
            start,
            end,
            outcome: c.outcome,
            open: c.end.is_none(),
        });
    }
    bars
}

/// Calls started in each bucket, by outcome (in `OUTCOMES` order).
pub fn starts_per_bucket(calls: &[CallRecord], f: &Frame) -> Vec<[u64; 6]> {
    let mut out = vec![[0u64; 6]; f.buckets];
    for c in calls {
        if let Some(row) = out.get_mut(f.index(c.start)) {
            row[outcome_index(c.outcome)] += 1;
        }
    }
    out
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn time_axis_desc(clock: &Clock, f: &Frame) -> String {
    format!("time ({})", clock.axis_zone(f.t0))
}

fn time_label(clock: Clock, f: Frame) -> impl Fn(&f64) -> String {
    let seconds = f.span() < 900.0;
    move |x: &f64| clock.axis(f.t0.plus_secs(*x), seconds)
}

fn svg_or_note(draw: impl FnOnce(&mut String) -> DrawResult) -> String {
    let mut svg = String::new();
    match draw(&mut svg) {
        // Inline in HTML the namespace is implied; the page names no URL at all.
        Ok(()) => svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1),
        Err(e) => format!(
            "<p class=\"note\">chart not drawn: {}</p>",
            super::escape(&e.to_string())
        ),
    }
}

/// Step plot of the bucketed concurrency of one line, with its ceiling.
pub fn concurrency_svg(series: &[u32], ceiling: u32, f: &Frame, clock: &Clock) -> String {
    svg_or_note(|out| {
        let root = SVGBackend::with_string(out, (W, 230)).into_drawing_area();
        root.fill(&WHITE)?;
        let ymax = ceiling.max(series.iter().copied().max().unwrap_or(0)) + 1;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..f.span(), 0u32..ymax)?;
        let fmt = time_label(*clock, *f);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(time_axis_desc(clock, f))
            .y_desc("calls in progress")
            .x_labels(10)
            .x_label_formatter(&fmt)
            .y_labels(ymax.min(12) as usize + 1)
            .draw()?;
        let mut pts = Vec::with_capacity(series.len() * 2);
        for (i, v) in series.iter().enumerate() {
            pts.push((i as f64 * f.width, *v));
            pts.push(((i + 1) as f64 * f.width, *v));
        }
        chart.draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))?;
        // The ceiling; the legend is the figure's caption (an in-chart box would hide data).
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, ceiling), (f.span(), ceiling)],
            RED.stroke_width(1),
        )))?;
        root.present()?;
        Ok(())
    })
}

/// One line's calls as bars from start to end on channel rows, coloured by outcome.
pub fn timeline_svg(bars: &[Bar], f: &Frame, clock: &Clock) -> String {
    svg_or_note(|out| {
        let rows = bars.iter().map(|b| b.row + 1).max().unwrap_or(1);
        let h = (80 + rows * 22).min(700);
        let root = SVGBackend::with_string(out, (W, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..f.span(), 0f64..f64::from(rows))?;
        let fmt = time_label(*clock, *f);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(time_axis_desc(clock, f))
            .y_desc("channel row")
            .x_labels(10)
            .x_label_formatter(&fmt)
            .y_labels((rows as usize + 1).min(17))
            .y_label_formatter(&|y: &f64| {
                if y.fract() == 0.0 && *y < f64::from(rows) {
                    format!("{}", *y as u32 + 1)
                } else {
                    String::new()
                }
            })
            .draw()?;
        chart.draw_series(bars.iter().map(|b| {
            let color = OUTCOMES[outcome_index(b.outcome)].2;
            let y = f64::from(b.row);
            // At least a hairline so a very short call stays visible.
            let end = b.end.max(b.start + f.span() / 2000.0);
            Rectangle::new([(b.start, y + 0.15), (end, y + 0.85)], color.filled())
        }))?;
        chart.draw_series(bars.iter().filter(|b| b.open).map(|b| {
            let y = f64::from(b.row);
            Rectangle::new(
                [(b.start, y + 0.15), (b.end, y + 0.85)],
                BLACK.stroke_width(1),
            )
        }))?;
        root.present()?;
        Ok(())
    })
}

/// Calls started per bucket, stacked by outcome.
pub fn starts_svg(series: &[[u64; 6]], f: &Frame, clock: &Clock) -> String {
    svg_or_note(|out| {
        let root = SVGBackend::with_string(out, (W, 230)).into_drawing_area();
        root.fill(&WHITE)?;
        let ymax = series
            .iter()
            .map(|r| r.iter().sum::<u64>())
            .max()
            .unwrap_or(0)
            + 1;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..f.span(), 0u64..ymax)?;
        let fmt = time_label(*clock, *f);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(time_axis_desc(clock, f))
            .y_desc(format!("calls started per {}", f.width_label()))
            .x_labels(10)
            .x_label_formatter(&fmt)
            .y_labels(ymax.min(10) as usize + 1)
            .draw()?;
        let mut rects = Vec::new();
        for (i, row) in series.iter().enumerate() {
            let x0 = i as f64 * f.width;
            let mut y = 0u64;
            for (k, n) in row.iter().enumerate() {
                if *n == 0 {
                    continue;
                }
                rects.push(Rectangle::new(
                    [(x0, y), (x0 + f.width * 0.9, y + n)],
                    OUTCOMES[k].2.filled(),
                ));
                y += n;
            }
        }
        chart.draw_series(rects)?;
        root.present()?;
        Ok(())
    })
}

/// Plain bars over labelled categories (histograms, hour of day).
pub fn category_svg(labels: &[String], counts: &[u64], x_desc: &str, y_desc: &str) -> String {
    svg_or_note(|out| {
        let root = SVGBackend::with_string(out, (W, 230)).into_drawing_area();
        root.fill(&WHITE)?;
        let n = counts.len().max(1) as u32;
        let ymax = counts.iter().copied().max().unwrap_or(0) + 1;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            // A segmented 0..n-1 has n slots, one per category.
            .build_cartesian_2d((0u32..n - 1).into_segmented(), 0u64..ymax)?;
        let lab = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(n as usize)
            .x_label_formatter(&lab)
            .y_labels(ymax.min(10) as usize + 1)
            .draw()?;
        chart.draw_series(counts.iter().enumerate().map(|(i, c)| {
            let i = i as u32;
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0),
                    (SegmentValue::Exact(i + 1), *c),
                ],
                RGBColor(0x15, 0x65, 0xc0).filled(),
            );
            r.set_margin(0, 0, 3, 3);
            r
        }))?;
        root.present()?;
        Ok(())
    })
}

/// A legend for the outcome colours, as HTML.
pub fn outcome_legend() -> String {
    let mut s = String::from("<p class=\"note\">");
    for (_, name, c) in OUTCOMES {
        let _ = write!(
            s,
            "<span style=\"color:#{:02x}{:02x}{:02x}\">&#9632;</span> {name} &nbsp; ",
            c.0, c.1, c.2
        );
    }
    s.push_str("(a black outline: still open when the capture ended, drawn to its end)</p>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> Timestamp {
        Timestamp::from_secs_f64(1_767_603_600.0 + s)
    }

    fn sp(a: f64, b: Option<f64>) -> Span {
        Span {
            start: t(a),
            end: b.map(t),
        }
    }

    #[test]
    fn frame_uses_round_fixed_buckets_over_the_span() {
        let f = Frame::new(t(0.0), t(75.0));
        assert_eq!((f.width, f.buckets), (1.0, 75));
        let f = Frame::new(t(0.0), t(1800.0));
        assert_eq!((f.width, f.buckets), (5.0, 360));
        let f = Frame::new(t(0.0), t(86_400.0));
        assert_eq!((f.width, f.buckets), (300.0, 288));
    }

    #[test]
    fn concurrency_is_a_step_carried_forward_with_no_false_zeros() {
        // 4 channels busy the whole capture, no event for minutes, a fifth call in the middle.
        let mut s: Vec<Span> = (0..4).map(|_| sp(0.0, Some(600.0))).collect();
        s.push(sp(300.0, Some(310.0)));
        let f = Frame::new(t(0.0), t(600.0));
        let b = concurrency_buckets(&s, &f);
        assert_eq!(b.len(), f.buckets);
        assert!(b.iter().all(|v| *v >= 4), "no bucket below 4: {b:?}");
        assert_eq!(b.iter().filter(|v| **v == 5).count(), 10, "{b:?}");
        assert_eq!(*b.iter().max().unwrap(), 5);
    }

    #[test]
    fn a_call_open_at_the_end_is_drawn_to_the_end() {
        let s = [sp(50.0, None)];
        let f = Frame::new(t(0.0), t(100.0));
        let b = concurrency_buckets(&s, &f);
        assert_eq!(b[..50], vec![0; 50][..]);
        assert!(b[50..].iter().all(|v| *v == 1), "{b:?}");
    }

    #[test]
    fn a_call_ending_mid_bucket_counts_in_that_bucket_only() {
        let s = [sp(10.5, Some(12.5))];
        let f = Frame::new(t(0.0), t(20.0));
        let b = concurrency_buckets(&s, &f);
        assert_eq!(&b[9..14], &[0, 1, 1, 1, 0]);
    }

    fn call(start: f64, end: Option<f64>, outcome: Outcome) -> CallRecord {
        CallRecord {
            end: end.map(t),
            outcome,
            ..CallRecord::new(
                format!("c{start}"),
                simboxd_core::model::Direction::Inbound,
                t(start),
            )
        }
    }

    #[test]
    fn timeline_rows_reuse_freed_channels_and_draw_open_calls_to_the_end() {
        let calls = [
            call(0.0, Some(10.0), Outcome::Answered),
            call(5.0, Some(20.0), Outcome::Busy),
            call(10.0, Some(15.0), Outcome::Failed),
            call(30.0, None, Outcome::Incomplete),
        ];
        let refs: Vec<&CallRecord> = calls.iter().collect();
        let f = Frame::new(t(0.0), t(60.0));
        let bars = timeline_bars(&refs, &f);
        let rows: Vec<u32> = bars.iter().map(|b| b.row).collect();
        assert_eq!(rows, vec![0, 1, 0, 0]);
        let last = bars[3];
        assert!(last.open && (last.end - 60.0).abs() < 1e-9, "{last:?}");
        // Rows used equal the highest concurrency.
        let spans: Vec<Span> = calls
            .iter()
            .map(|c| Span {
                start: c.start,
                end: c.end,
            })
            .collect();
        assert_eq!(
            crate::figures::max_concurrent(&spans, Some(t(60.0))),
            rows.iter().max().unwrap() + 1
        );
    }

    #[test]
    fn charts_have_time_axis_titles_and_ceiling() {
        let f = Frame::new(t(0.0), t(75.0));
        let clock = Clock::parse("Europe/Berlin").unwrap();
        let svg = concurrency_svg(&[1, 2, 2], 2, &f, &clock);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(!svg.contains("http"), "no URL in the page");
        assert!(svg.contains("Europe/Berlin, UTC+01:00"), "zone named");
        assert!(svg.contains("10:00:"), "local clock ticks");
        assert!(svg.contains("calls in progress"), "axis title");
        assert!(
            svg.contains("stroke=\"#FF0000\""),
            "the ceiling line: {svg}"
        );
    }
}
