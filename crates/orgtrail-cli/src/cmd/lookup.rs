//! `orgtrail lookup`: find events, in a store on disk or from a running collector.

use std::io::{self, Write};
use std::process::ExitCode;

use orgtrail_core::{AccountId, CloudTrailEvent, Timestamp};
use orgtrail_store::{Attr, Query, StoredEvent};

use crate::cmd::remote::Where;

/// Find events: who, when, from where, what resource, what outcome. Filters combine (AND)
/// with a time range; events come newest first. No filter lists every event.
///
/// Ask a running collector: the one of your profile (`orgtrail profile add`), or
/// --collector URL --cert F --key F --ca F (an auditor or admin certificate); or open a store
/// on disk with --data-dir DIR --keys DIR (the collector must not be running on it).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: crate::cmd::remote::Target,
    /// Keep running and print matching events as the collector stores them (remote only).
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    filters: Filters,
    /// Most events to print (pages are followed).
    #[arg(long, default_value_t = 50)]
    max: usize,
    /// table (one row per event), json (an array of the events), or jsonl (each event's
    /// original bytes, one per line).
    #[arg(long, default_value = "table", value_parser = ["table", "json", "jsonl"])]
    output: String,
}

impl Args {
    /// Follow instead of listing.
    pub(crate) fn set_follow(&mut self) {
        self.follow = true;
    }

    /// Only Insight events (`eventCategory` Insight, through the index): set by `orgtrail
    /// insights list|follow`.
    pub(crate) fn insights_only(&mut self) {
        self.filters.event_category = Some("Insight".into());
    }

    /// Events per page asked for, `have` already kept.
    fn page(&self, have: usize) -> usize {
        (self.max - have).min(orgtrail_store::MAX_PAGE)
    }
}

/// What a lookup tells on stderr when the store indexes a filter's attribute only from some
/// seq on (a store written before eventCategory and insightType were indexed).
pub(crate) fn warn_partial(from: u64) {
    eprintln!(
        "orgtrail: note: this store indexes eventCategory and insightType only for the events stored from seq {from} on (it was written before they were indexed): older matching events are not in this answer"
    );
}

/// Filters shared by the offline and the remote lookup.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Filters {
    #[arg(long)]
    pub(crate) event_name: Option<String>,
    #[arg(long)]
    pub(crate) event_source: Option<String>,
    #[arg(long)]
    pub(crate) event_id: Option<String>,
    /// User name as LookupEvents shows it (IAM user, role session, ...).
    #[arg(long)]
    pub(crate) username: Option<String>,
    /// A resource name or ARN (bucket, instance id, role, ...).
    #[arg(long)]
    pub(crate) resource_name: Option<String>,
    /// e.g. AWS::S3::Bucket.
    #[arg(long)]
    pub(crate) resource_type: Option<String>,
    #[arg(long)]
    pub(crate) access_key_id: Option<String>,
    #[arg(long, value_parser = ["true", "false"])]
    pub(crate) read_only: Option<String>,
    #[arg(long)]
    pub(crate) account: Option<AccountId>,
    #[arg(long)]
    pub(crate) region: Option<String>,
    /// e.g. AccessDenied.
    #[arg(long)]
    pub(crate) error_code: Option<String>,
    /// eventCategory: Management (also events without one), Data, Insight, NetworkActivity.
    /// Indexed since this version: on a store written before, only events stored after the
    /// upgrade are found, and the answer says so on stderr.
    #[arg(long, value_name = "CATEGORY")]
    pub(crate) event_category: Option<String>,
    /// insightDetails.insightType of Insight events. Indexed since this version, as
    /// --event-category.
    #[arg(long, value_name = "TYPE", value_parser = ["ApiCallRateInsight", "ApiErrorRateInsight"])]
    pub(crate) insight_type: Option<String>,
    /// Events at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_time, conflicts_with = "since")]
    pub(crate) start: Option<Timestamp>,
    /// Events in the last DURATION (e.g. 90s, 15m, 2h, 7d).
    #[arg(long, value_parser = parse_duration_ms)]
    pub(crate) since: Option<i64>,
    /// Events at or before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub(crate) end: Option<Timestamp>,
}

pub(crate) fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| e.to_string())
}

/// `90s`, `15m`, `2h`, `7d` in milliseconds.
pub(crate) fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 15m, 2h or 7d"))?;
    let mult = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{s:?} is not a duration such as 90s, 15m, 2h or 7d"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too long"))
}

impl Filters {
    pub(crate) fn to_query(&self) -> Query {
        let mut f = Vec::new();
        let mut add = |a: Attr, v: &Option<String>| {
            if let Some(v) = v {
                f.push((a, v.clone()));
            }
        };
        add(Attr::EventName, &self.event_name);
        add(Attr::EventSource, &self.event_source);
        add(Attr::Username, &self.username);
        add(Attr::ResourceName, &self.resource_name);
        add(Attr::ResourceType, &self.resource_type);
        add(Attr::AccessKeyId, &self.access_key_id);
        add(Attr::ReadOnly, &self.read_only);
        add(Attr::Region, &self.region);
        add(Attr::ErrorCode, &self.error_code);
        add(Attr::EventCategory, &self.event_category);
        add(Attr::InsightType, &self.insight_type);
        add(Attr::Account, &self.account.map(|a| a.to_string()));
        let start = self.start.or_else(|| {
            self.since.map(|d| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |x| i64::try_from(x.as_millis()).unwrap_or(0));
                Timestamp(now - d)
            })
        });
        Query {
            filters: f,
            event_id: self.event_id.clone(),
            accounts: Vec::new(),
            start,
            end: self.end,
            limit: 0,
            page_token: None,
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.follow {
        if args.target.data_dir.is_some() {
            anyhow::bail!(
                "--follow watches a running collector (a store on disk is not followed): drop --data-dir, and give --collector URL --cert F --key F --ca F or use a profile"
            );
        }
        let r = args.target.remote.require(None)?;
        return crate::cmd::remote::runtime()?.block_on(remote(args, r));
    }
    if let Where::Remote(r) = args.target.resolve()? {
        return crate::cmd::remote::runtime()?.block_on(remote(args, r));
    }
    let ledger = args.target.open_offline()?;
    let mut q = args.filters.to_query();
    let mut events = Vec::new();
    let mut partial = None;
    while events.len() < args.max {
        q.limit = args.page(events.len());
        let page = ledger.query(&q)?;
        partial = partial.or(page.indexed_from);
        events.extend(page.events);
        match page.next_token {
            Some(t) => q.page_token = Some(t),
            None => break,
        }
    }
    ledger.close()?;
    events.truncate(args.max);
    if let Some(from) = partial {
        warn_partial(from);
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    print_events(&mut out, &events, &args.output)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn remote(args: Args, r: orgtrail_client::Remote) -> anyhow::Result<ExitCode> {
    use orgtrail_proto::v1 as pb;
    let mut c = crate::cmd::remote::connect(&r).await?;
    let q = args.filters.to_query();
    let filters = orgtrail_client::filters(&q);
    let stdout = io::stdout();
    if args.follow {
        return follow(&args, &r, c, filters).await;
    }
    let mut events = Vec::new();
    // One event by account and eventID: asked directly.
    if let (Some(id), Some(acct), [(orgtrail_store::Attr::Account, _)], None, None) = (
        &q.event_id,
        args.filters.account,
        q.filters.as_slice(),
        q.start,
        q.end,
    ) {
        match c
            .query
            .get_event(pb::GetEventRequest {
                account: acct.to_string(),
                event_id: id.clone(),
            })
            .await
        {
            Ok(r) => {
                if let Some(e) = r.into_inner().event {
                    events.push(orgtrail_client::from_pb(e)?);
                }
            }
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(c.explain(s).into()),
        }
        let mut out = io::BufWriter::new(stdout.lock());
        print_events(&mut out, &events, &args.output)?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut token = String::new();
    let mut partial = None;
    while events.len() < args.max {
        let page = c
            .query
            .lookup(pb::LookupRequest {
                filters: filters.clone(),
                event_id: q.event_id.clone().unwrap_or_default(),
                start_ms: q.start.map(Timestamp::millis),
                end_ms: q.end.map(Timestamp::millis),
                max_results: args.page(events.len()) as u32,
                next_token: token,
            })
            .await
            .map_err(|s| c.explain(s))?
            .into_inner();
        partial = partial.or(page.indexed_from_seq);
        for e in page.events {
            events.push(orgtrail_client::from_pb(e)?);
        }
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    events.truncate(args.max);
    if let Some(from) = partial {
        warn_partial(from);
    }
    let mut out = io::BufWriter::new(stdout.lock());
    print_events(&mut out, &events, &args.output)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Reconnection attempts in a row before a follow gives up.
const FOLLOW_RETRIES: u32 = 10;

/// Follows until interrupted. When the collector goes away (it stopped, restarted, the
/// network broke), reconnects with backoff and resumes after the last position seen: the
/// collector replays what was stored meanwhile, so nothing is missed or shown twice. Gives up
/// with status 1 after [`FOLLOW_RETRIES`] failed attempts in a row.
async fn follow(
    args: &Args,
    r: &orgtrail_client::Remote,
    mut c: crate::cmd::remote::Client,
    filters: Vec<orgtrail_proto::v1::Filter>,
) -> anyhow::Result<ExitCode> {
    use orgtrail_proto::v1 as pb;
    let stdout = io::stdout();
    // The store's position this follower has seen up to (None before the first answer).
    let mut position: Option<u64> = None;
    let mut failures = 0u32;
    let mut backoff = std::time::Duration::from_millis(200);
    let mut announced = false;
    loop {
        let why = match c
            .query
            .follow(pb::FollowRequest {
                filters: filters.clone(),
                after_seq: position,
            })
            .await
        {
            // Refusals (permissions, bad filters, too far behind) are final.
            Err(s) if !retryable(&s) => return Err(c.explain(s).into()),
            Err(s) => c.explain(s).to_string(),
            Ok(r) => {
                let mut stream = r.into_inner();
                if !announced {
                    eprintln!("following events as {} stores them (Ctrl-C to stop)", c.url);
                    announced = true;
                } else {
                    eprintln!(
                        "reconnected to {}; resuming after seq {}",
                        c.url,
                        position.unwrap_or(0)
                    );
                }
                loop {
                    let msg = match stream.message().await {
                        Ok(Some(m)) => m,
                        Ok(None) => {
                            break "the collector ended the stream (it stopped or restarted)"
                                .to_string();
                        }
                        Err(s) if !retryable(&s) => return Err(c.explain(s).into()),
                        Err(s) => break c.explain(s).to_string(),
                    };
                    failures = 0;
                    backoff = std::time::Duration::from_millis(200);
                    let seen = position.unwrap_or(0);
                    if msg.event.is_empty() {
                        // Position marker: where the store is as this stream starts.
                        position = Some(seen.max(msg.seq));
                        continue;
                    }
                    // The collector replays only what is after `position` and skips live
                    // events up to its head: nothing arrives twice. (Live events of batches
                    // stored concurrently may arrive slightly out of seq order; a stream cut
                    // exactly between them can skip the earlier ones.)
                    position = Some(seen.max(msg.seq));
                    let e = orgtrail_client::from_pb(msg)?;
                    let mut out = stdout.lock();
                    print_one(&mut out, &e, &args.output)?;
                    out.flush()?;
                }
            }
        };
        failures += 1;
        if failures > FOLLOW_RETRIES {
            eprintln!(
                "orgtrail: error: lost {} ({why}) and could not reconnect after {FOLLOW_RETRIES} attempts; events stored from seq {} on were not shown",
                c.url,
                position.unwrap_or(0) + 1
            );
            return Ok(ExitCode::from(1));
        }
        eprintln!(
            "lost {} ({why}); reconnecting in {} ms (attempt {failures} of {FOLLOW_RETRIES})",
            c.url,
            backoff.as_millis()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
        if let Ok(fresh) = crate::cmd::remote::Client::connect(r).await {
            c = fresh;
        }
    }
}

/// Whether a follow that failed with `s` may succeed if tried again.
fn retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Aborted
    )
}

/// Prints one event as it arrives (follow mode): jsonl/json print its bytes, table a row.
fn print_one(out: &mut impl Write, e: &StoredEvent, output: &str) -> io::Result<()> {
    if output == "table" {
        writeln!(out, "{}", row(e).join("  "))
    } else {
        out.write_all(&e.bytes)?;
        out.write_all(b"\n")
    }
}

/// Prints events in the chosen output format.
pub(crate) fn print_events(
    out: &mut impl Write,
    events: &[StoredEvent],
    output: &str,
) -> io::Result<()> {
    match output {
        "jsonl" => {
            for e in events {
                out.write_all(&e.bytes)?;
                out.write_all(b"\n")?;
            }
        }
        "json" => {
            out.write_all(b"[")?;
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",\n")?;
                }
                out.write_all(&e.bytes)?;
            }
            out.write_all(b"]\n")?;
        }
        _ => {
            let rows: Vec<[String; 8]> = events.iter().map(row).collect();
            let header = [
                "TIME",
                "ACCOUNT",
                "REGION",
                "WHO",
                "EVENT",
                "SOURCE IP",
                "RESOURCES",
                "OUTCOME",
            ];
            super::table::write(out, &header, &rows)?;
            writeln!(out, "({} events)", events.len())?;
        }
    }
    Ok(())
}

fn row(e: &StoredEvent) -> [String; 8] {
    let time = e.time.to_string();
    match CloudTrailEvent::parse(e.bytes.clone()) {
        Ok(ev) => {
            let f = ev.fields();
            let who = f.username().unwrap_or("-").to_string();
            let outcome = match &f.error_code {
                Some(c) => c.to_string(),
                None => "Success".into(),
            };
            let mut res: Vec<String> = f.resource_names.iter().map(|n| n.to_string()).collect();
            if res.len() > 2 {
                let more = res.len() - 2;
                res.truncate(2);
                res.push(format!("+{more}"));
            }
            [
                time,
                e.account.to_string(),
                f.aws_region.as_deref().unwrap_or("-").to_string(),
                who,
                format!("{}:{}", short_source(&f.event_source), f.event_name),
                f.source_ip_address.as_deref().unwrap_or("-").to_string(),
                if res.is_empty() {
                    "-".into()
                } else {
                    res.join(",")
                },
                outcome,
            ]
        }
        Err(err) => [
            time,
            e.account.to_string(),
            "-".into(),
            "-".into(),
            format!("(unparseable: {err})"),
            "-".into(),
            "-".into(),
            "-".into(),
        ],
    }
}

fn short_source(s: &str) -> &str {
    s.strip_suffix(".amazonaws.com").unwrap_or(s)
}
