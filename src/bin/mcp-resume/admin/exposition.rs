//! Reading numbers back from the Prometheus text format the recorder
//! renders, so that the status page shows exactly what `/metrics` shows.

/// One sample line: the metric's name, its labels, its value.
#[derive(Debug, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// The samples of a text exposition; comments and lines that do not parse
/// are skipped (the recorder writes none).
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(sample)
}

/// The sum of `name`'s samples whose labels include all of `labels`.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .filter(|sample| sample.name == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.label(key) == Some(value))
        })
        .map(|sample| sample.value)
        // Folded from +0: `sum` of nothing is -0, which would print as such.
        .fold(0.0, |total, value| total + value)
}

/// Parses `name{key="value",...} value` or `name value`.
fn sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = &rest[..eq];
            let (value, after) = quoted(rest[eq + 1..].strip_prefix('"')?)?;
            labels.push((key, value));
            rest = after;
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// A label value up to its closing quote, unescaped, and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP mcp_resume_resumes_total Resumes.
# TYPE mcp_resume_resumes_total counter
mcp_resume_resumes_total{outcome=\"replayed\"} 3
mcp_resume_resumes_total{outcome=\"malformed\"} 2
mcp_resume_resumes_total{outcome=\"unknown\",odd=\"a \\\"quoted\\\" \\\\ value\"} 1
mcp_resume_streams_live 4

mcp_resume_events_committed_total 1.5e3
";

    #[test]
    fn sums_a_metric_over_the_labels_asked_for() {
        assert_eq!(sum(TEXT, "mcp_resume_resumes_total", &[]), 6.0);
        let replayed = [("outcome", "replayed")];
        assert_eq!(sum(TEXT, "mcp_resume_resumes_total", &replayed), 3.0);
        assert_eq!(sum(TEXT, "mcp_resume_streams_live", &[]), 4.0);
        assert_eq!(sum(TEXT, "mcp_resume_events_committed_total", &[]), 1500.0);
        assert_eq!(sum(TEXT, "absent", &[]), 0.0);
    }

    #[test]
    fn reads_escaped_label_values() {
        let odd = samples(TEXT).find(|s| s.label("odd").is_some()).unwrap();
        assert_eq!(odd.label("odd"), Some("a \"quoted\" \\ value"));
        assert_eq!(odd.label("outcome"), Some("unknown"));
        assert_eq!(odd.value, 1.0);
    }

    #[test]
    fn skips_lines_that_do_not_parse() {
        let text = "broken{outcome=\"x} 1\nno_value\nok 2\n";
        let names: Vec<_> = samples(text).map(|s| s.name).collect();
        assert_eq!(names, ["ok"]);
    }
}
