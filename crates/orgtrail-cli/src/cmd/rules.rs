//! `orgtrail rules check|list|test|import-sigma`: rule files checked, listed, tried on events
//! without a collector, and translated from SigmaHQ's CloudTrail rules.

use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use orgtrail_core::{DecodeLimits, Decoder, InputFormat};
use orgtrail_rules::cloudtrail::envelope;
use orgtrail_rules::{Engine, RuleSet, interpret};
use serde_json::Value;

/// Work with detection rules: EventBridge event patterns in rule files.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    Check(CheckArgs),
    List(ListArgs),
    Test(TestArgs),
    ImportSigma(ImportSigmaArgs),
}

/// Translate SigmaHQ CloudTrail rules (logsource aws/cloudtrail) into orgtrail rule files.
///
/// Reads every .yml/.yaml under DIR. Each rule is reported exact, with caveats (each caveat
/// stated), or refused (with the reason); then the counts. With --out, writes one YAML rule
/// file per translated rule there, keeping the Sigma rule's id (as the rule id), title,
/// author, references, false positives and the DRL 1.1 attribution. Exit status 0 when DIR
/// was read (refusals are part of the report), 1 when it could not be read or written.
#[derive(Debug, clap::Args)]
struct ImportSigmaArgs {
    /// The directory of Sigma rules (searched recursively).
    #[arg(value_name = "DIR")]
    dir: PathBuf,

    /// Where to write the translated rule files (created if missing). Without it, only the
    /// report is printed.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Check every rule file of a directory (.toml, .json, .yaml, .yml; hidden files ignored).
///
/// Prints one line and exits 0 when every file is a valid rule and the ids are unique; else
/// names each bad file with the reason and exits 1.
#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The rules directory, or `pack:cis` for the built-in CIS AWS Foundations v5.0 pack.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// List the rules of a directory: id, severity, whether enabled, name, file.
#[derive(Debug, clap::Args)]
struct ListArgs {
    /// The rules directory, or `pack:cis` for the built-in CIS AWS Foundations v5.0 pack.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// A dry run: which rules fire on which events.
///
/// EVENTS are files in any shape `orgtrail validate` reads (delivered log files, plain or .gz,
/// JSON lines, single events); `-` reads standard input. Each event is checked as a CloudTrail
/// record first; rules written against the EventBridge envelope match it as AWS would deliver
/// it. Prints one line per match, `FILE: POSITION: RULE (severity): eventName`, then
/// `events=N matches=M`. A threshold rule counts its matches in input order by eventTime and
/// is listed only on the event that crosses its threshold. Exit status: 0 when every event was read, 1 when some were invalid,
/// 2 when the rules are invalid (every problem is listed) or on a usage error.
#[derive(Debug, clap::Args)]
struct TestArgs {
    /// The rules directory, or `pack:cis` for the built-in CIS AWS Foundations v5.0 pack.
    #[arg(value_name = "DIR")]
    dir: PathBuf,

    /// Say why each rule fired: the values that satisfied its pattern.
    #[arg(long)]
    explain: bool,

    /// `text` (default), or `jsonl`: one line per match, `{"event": N, "rule": "ID"}`, N the
    /// 0-based index of the event among all inputs.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,

    /// Match each input JSON object exactly as given, one per line: no CloudTrail validation,
    /// no envelope (for pattern conformance suites).
    #[arg(long)]
    raw: bool,

    /// Input shape (not with --raw): auto, records (a delivered log file), jsonl, or event.
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    format: InputFormat,

    /// Files of events; `-` reads standard input.
    #[arg(required = true, value_name = "EVENTS")]
    events: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Jsonl,
}

fn parse_format(s: &str) -> Result<InputFormat, String> {
    s.parse()
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Check(a) => check(&a),
        What::List(a) => list(&a),
        What::Test(a) => test(&a),
        What::ImportSigma(a) => import_sigma(&a),
    }
}

fn import_sigma(a: &ImportSigmaArgs) -> anyhow::Result<ExitCode> {
    use orgtrail_rules::sigma::{self, Outcome};
    let report = sigma::import_dir(&a.dir)
        .with_context(|| format!("cannot read the Sigma rules in {}", a.dir.display()))?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let file_w = report
        .rules
        .iter()
        .map(|t| t.file.display().to_string().len())
        .max()
        .unwrap_or(0)
        .max(4);
    writeln!(out, "{:file_w$}  {:12}  ID / REASON", "FILE", "RESULT")?;
    for t in &report.rules {
        let file = t.file.display().to_string();
        let id = t.sigma_id.as_deref().unwrap_or("-");
        match &t.outcome {
            Outcome::Exact => writeln!(out, "{file:file_w$}  {:12}  {id}", "exact")?,
            Outcome::Caveats(cs) => {
                writeln!(out, "{file:file_w$}  {:12}  {id}", "with caveats")?;
                for c in cs {
                    writeln!(out, "{:file_w$}  {:12}    caveat: {c}", "", "")?;
                }
            }
            Outcome::Refused(why) => {
                writeln!(out, "{file:file_w$}  {:12}  {id}", "refused")?;
                writeln!(out, "{:file_w$}  {:12}    reason: {why}", "", "")?;
            }
        }
    }
    let (exact, caveats, refused) = report.counts();
    writeln!(
        out,
        "rules={} exact={exact} with_caveats={caveats} refused={refused}",
        report.rules.len()
    )?;
    if let Some(dir) = &a.out {
        let rules: Vec<&sigma::Translated> = report
            .rules
            .iter()
            .filter_map(|t| t.rule.as_ref())
            .collect();
        let written = sigma::write::write_all(&rules, dir)
            .with_context(|| format!("cannot write the rule files into {}", dir.display()))?;
        writeln!(
            out,
            "wrote {} rule files to {}",
            written.len(),
            dir.display()
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The rules of `dir`, or every problem printed and `None`.
fn load(dir: &std::path::Path) -> Option<RuleSet> {
    let loaded = match dir.to_str() {
        Some(source) => RuleSet::load(source),
        None => RuleSet::load_dir(dir),
    };
    match loaded {
        Ok(s) => Some(s),
        Err(problems) => {
            eprintln!("orgtrail: invalid rules in {}:", dir.display());
            for p in problems {
                eprintln!("  - {p}");
            }
            None
        }
    }
}

fn check(a: &CheckArgs) -> anyhow::Result<ExitCode> {
    let Some(set) = load(&a.dir) else {
        return Ok(ExitCode::FAILURE);
    };
    let enabled = set.rules.iter().filter(|r| r.enabled).count();
    println!(
        "{}: {} rules, {enabled} enabled, all valid",
        a.dir.display(),
        set.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn list(a: &ListArgs) -> anyhow::Result<ExitCode> {
    let Some(set) = load(&a.dir) else {
        return Ok(ExitCode::FAILURE);
    };
    let id_w = set
        .rules
        .iter()
        .map(|r| r.id.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let name_w = set
        .rules
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = io::BufWriter::new(io::stdout().lock());
    writeln!(
        out,
        "{:id_w$}  SEVERITY  ENABLED  {:name_w$}  FILE",
        "ID", "NAME"
    )?;
    for r in &set.rules {
        writeln!(
            out,
            "{:id_w$}  {:8}  {:7}  {:name_w$}  {}",
            r.id,
            r.severity.as_str(),
            if r.enabled { "yes" } else { "no" },
            r.name,
            r.file.display()
        )?;
    }
    writeln!(out, "({} rules)", set.len())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Default)]
struct Tally {
    events: u64,
    matches: u64,
    invalid: u64,
}

fn test(a: &TestArgs) -> anyhow::Result<ExitCode> {
    let Some(set) = load(&a.dir) else {
        return Ok(ExitCode::from(2));
    };
    // --raw matches the patterns as written against each object as given.
    let raw_engine = a.raw.then(|| {
        Engine::new(
            &set.rules
                .iter()
                .filter(|r| r.enabled)
                .map(|r| r.pattern.clone())
                .collect::<Vec<_>>(),
        )
    });
    let enabled: Vec<usize> = (0..set.len()).filter(|i| set.rules[*i].enabled).collect();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut tally = Tally::default();
    let mut hits = Vec::new();
    // Threshold rules count their matches in the order of the input, by eventTime, and fire
    // only on the event that crosses their threshold, as in the collector.
    let mut windows = orgtrail_rules::Windows::default();
    for path in &a.events {
        let name = path.display().to_string();
        let reader = match crate::cmd::open_input(path) {
            Ok(r) => r,
            Err(e) => {
                tally.invalid += 1;
                eprintln!("{name}: cannot open: {e}");
                continue;
            }
        };
        let mut each = |position: &str, event: &Value, out: &mut dyn Write| -> anyhow::Result<()> {
            let index = tally.events;
            tally.events += 1;
            match &raw_engine {
                Some(engine) => {
                    engine.matches(event, &[], &mut hits);
                    for h in hits.iter_mut() {
                        *h = enabled[*h];
                    }
                }
                None => set.matches(event, &mut hits),
            }
            for h in &hits {
                let rule = &set.rules[*h];
                if let Some(th) = &rule.threshold {
                    let crossed =
                        orgtrail_rules::threshold::event_time_ms(event).is_some_and(|t| {
                            windows.observe_record(&rule.id, th, event, t, index + 1)
                                == orgtrail_rules::threshold::Outcome::Fired
                        });
                    if !crossed {
                        continue;
                    }
                }
                tally.matches += 1;
                match a.output {
                    Output::Jsonl => writeln!(
                        out,
                        "{}",
                        serde_json::json!({"event": index, "rule": rule.id})
                    )?,
                    Output::Text => {
                        let what = event["eventName"].as_str().unwrap_or("-");
                        write!(
                            out,
                            "{name}: {position}: {} ({}): {what}",
                            rule.id,
                            rule.severity.as_str()
                        )?;
                        if a.explain {
                            // Explained in the form the rule is written in.
                            let why = if a.raw || !is_envelope_form(&rule.pattern) {
                                interpret::explain(&rule.pattern, event)
                            } else {
                                interpret::explain(&rule.pattern, &envelope(event))
                            };
                            write!(out, ": {}", why.unwrap_or_default())?;
                            if let Some(th) = &rule.threshold {
                                match &th.distinct {
                                    Some(d) => write!(
                                        out,
                                        "; and more than {} different {d} values within {}",
                                        th.count, th.spec.window
                                    )?,
                                    None => write!(
                                        out,
                                        "; and more than {} such events within {}",
                                        th.count, th.spec.window
                                    )?,
                                }
                                if !th.group_by.is_empty() {
                                    write!(out, " of the same {}", th.group_by.join(", "))?;
                                }
                            }
                        }
                        writeln!(out)?;
                    }
                }
            }
            Ok(())
        };
        let result = if a.raw {
            raw_input(reader, &name, &mut each, &mut out)
        } else {
            records_input(reader, &name, a.format, &mut each, &mut out)
        };
        match result {
            Ok(bad) => tally.invalid += bad,
            Err(e) if crate::cmd::is_broken_pipe(&e) => return Ok(ExitCode::from(1)),
            Err(e) => {
                tally.invalid += 1;
                eprintln!("{name}: {}", crate::cmd::describe_error(&e));
            }
        }
    }
    if a.output == Output::Text {
        writeln!(out, "events={} matches={}", tally.events, tally.matches)?;
    }
    if out.flush().is_err() {
        return Ok(ExitCode::from(1));
    }
    if tally.invalid > 0 {
        eprintln!("orgtrail: {} events could not be read", tally.invalid);
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn is_envelope_form(p: &orgtrail_rules::Pattern) -> bool {
    p.paths().any(|path| {
        matches!(
            path.split('.').next().unwrap_or(path),
            "detail" | "detail-type" | "source" | "account" | "region" | "time" | "id" | "version"
        )
    })
}

type Each<'a> = dyn FnMut(&str, &Value, &mut dyn Write) -> anyhow::Result<()> + 'a;

/// JSON objects one per line, as given. Returns how many lines were not JSON objects.
fn raw_input(
    reader: Box<dyn Read + Send>,
    name: &str,
    each: &mut Each<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let mut bad = 0;
    for (n, line) in io::BufReader::new(reader).lines().enumerate() {
        let line = line.context("input stopped being readable")?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(v @ Value::Object(_)) => each(&format!("line {}", n + 1), &v, out)?,
            Ok(_) => {
                bad += 1;
                eprintln!("{name}: line {}: not a JSON object", n + 1);
            }
            Err(e) => {
                bad += 1;
                eprintln!("{name}: line {}: not JSON: {e}", n + 1);
            }
        }
    }
    Ok(bad)
}

/// CloudTrail records in any shape `validate` reads. Returns how many were invalid.
fn records_input(
    reader: Box<dyn Read + Send>,
    name: &str,
    format: InputFormat,
    each: &mut Each<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let mut bad = 0;
    let decoder = Decoder::new(reader, format, DecodeLimits::default())?;
    for item in decoder {
        let item = item.context("input stopped being readable")?;
        let event = match item.result {
            Ok(e) => e,
            Err(reason) => {
                bad += 1;
                eprintln!("{name}: {}: {reason}", item.position);
                continue;
            }
        };
        let v: Value =
            serde_json::from_slice(event.bytes()).context("a validated event is JSON")?;
        each(&item.position.to_string(), &v, out)?;
    }
    Ok(bad)
}
