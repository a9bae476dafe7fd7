//! The simulated organisation: accounts, their principals and resource pools.
//!
//! Everything here is derived from the seed once, in [`World::new`], from
//! streams independent of the per-event stream, so every account keeps the
//! same users, roles, instances, buckets, … for a given seed no matter how many
//! events are generated.

use std::collections::HashSet;

use crate::fmt;
use crate::rng::{Rng, derive};

/// Stream labels (see [`derive`]).
const STREAM_ACCOUNT_IDS: u64 = 1;
const STREAM_ACCOUNT: u64 = 0x100;

/// Regions with their weight in the mix of account home regions.
pub(crate) const REGIONS: &[(u32, &str)] = &[
    (40, "us-east-1"),
    (18, "us-west-2"),
    (14, "eu-west-1"),
    (10, "eu-central-1"),
    (6, "ap-southeast-2"),
    (5, "ap-northeast-1"),
    (4, "us-east-2"),
    (3, "ap-south-1"),
];

const COMPANIES: &[&str] = &[
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "cyberdyne",
    "tyrell",
    "wonka",
    "soylent",
    "vandelay",
    "massive",
    "oscorp",
    "aperture",
    "contoso",
];

const APPS: &[&str] = &[
    "orders",
    "payments",
    "inventory",
    "billing",
    "search",
    "notifications",
    "reporting",
    "auth",
    "catalog",
    "shipping",
    "analytics",
    "media",
];

const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yasmin", "zoe",
    "omar", "priya", "chen", "fatima", "lars", "ines", "kenji", "amara", "diego",
];

const LAST: &[&str] = &[
    "smith", "jones", "garcia", "miller", "davis", "martinez", "lopez", "wilson", "anderson",
    "taylor", "thomas", "moore", "jackson", "martin", "lee", "thompson", "white", "harris",
    "clark", "lewis", "walker", "hall", "young", "king", "wright", "scott", "green", "baker",
    "adams", "nelson",
];

const HUMAN_ROLES: &[&str] = &[
    "OrganizationAccountAccessRole",
    "Admin",
    "Developer",
    "ReadOnly",
    "SecurityAudit",
    "DataScientist",
];

const SSO_SETS: &[&str] = &[
    "AdministratorAccess",
    "PowerUserAccess",
    "ReadOnlyAccess",
    "ViewOnlyAccess",
];

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.6; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
];

/// How a principal's user agent is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UaStyle {
    /// The stored prefix is followed by the CLI command for the operation.
    Cli,
    /// The stored string is used as-is (SDKs, Terraform).
    Fixed,
}

/// The tool a principal uses for API calls outside the console.
#[derive(Debug, Clone)]
pub(crate) struct Agent {
    pub(crate) ua: String,
    pub(crate) style: UaStyle,
    /// Per-mille of this principal's calls made from the console.
    pub(crate) console_permille: u32,
    pub(crate) browser: &'static str,
    /// Index into [`Account::ips`].
    pub(crate) ip: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) arn: String,
    pub(crate) principal_id: String,
    /// Long-term key (`AKIA…`) used by CLI/SDK calls.
    pub(crate) access_key: String,
    /// Session key (`ASIA…`) used by console calls.
    pub(crate) console_key: String,
    pub(crate) mfa: bool,
    pub(crate) agent: Agent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoleKind {
    Human,
    Workload,
    Ci,
    Sso,
}

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) name: String,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`
    pub(crate) arn: String,
    /// `AROA…:SESSION`
    pub(crate) principal_id: String,
    pub(crate) access_key: String,
    pub(crate) agent: Agent,
    pub(crate) mfa: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub(crate) name: String,
    pub(crate) arn: String,
    pub(crate) role_id: String,
    pub(crate) kind: RoleKind,
    pub(crate) sessions: Vec<Session>,
}

#[derive(Debug, Clone)]
pub(crate) struct Federated {
    pub(crate) name: String,
    pub(crate) arn: String,
    pub(crate) principal_id: String,
    pub(crate) access_key: String,
    /// Index into [`Account::users`] of the IAM user that called GetFederationToken.
    pub(crate) issuer: usize,
    pub(crate) agent: Agent,
}

/// A pooled resource: its id/name, ARN, home region and one type-specific extra
/// (instance type, key alias, security-group name, queue URL, …).
#[derive(Debug, Clone)]
pub(crate) struct Res {
    pub(crate) id: String,
    pub(crate) arn: String,
    pub(crate) region: &'static str,
    pub(crate) extra: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) id: String,
    pub(crate) company: &'static str,
    pub(crate) env: &'static str,
    /// Home region first, then one or two secondary regions.
    pub(crate) regions: Vec<&'static str>,
    pub(crate) apps: Vec<&'static str>,
    pub(crate) ips: Vec<String>,
    pub(crate) users: Vec<User>,
    pub(crate) roles: Vec<Role>,
    /// Indices into `roles` by kind, for weighted picks.
    pub(crate) human_roles: Vec<usize>,
    pub(crate) workload_roles: Vec<usize>,
    pub(crate) ci_roles: Vec<usize>,
    pub(crate) sso_roles: Vec<usize>,
    pub(crate) federated: Vec<Federated>,
    pub(crate) root_arn: String,
    pub(crate) root_key: String,
    pub(crate) root_agent: Agent,
    /// One VPC per account region; `extra` is its CIDR block.
    pub(crate) vpcs: Vec<Res>,
    pub(crate) instances: Vec<Res>,
    pub(crate) amis: Vec<Res>,
    pub(crate) security_groups: Vec<Res>,
    pub(crate) subnets: Vec<Res>,
    pub(crate) volumes: Vec<Res>,
    pub(crate) buckets: Vec<Res>,
    pub(crate) db_instances: Vec<Res>,
    pub(crate) functions: Vec<Res>,
    pub(crate) kms_keys: Vec<Res>,
    pub(crate) secrets: Vec<Res>,
    pub(crate) topics: Vec<Res>,
    pub(crate) queues: Vec<Res>,
    pub(crate) tables: Vec<Res>,
    pub(crate) parameters: Vec<Res>,
    pub(crate) alarms: Vec<Res>,
    pub(crate) trails: Vec<Res>,
    pub(crate) repos: Vec<Res>,
    pub(crate) load_balancers: Vec<Res>,
    pub(crate) target_groups: Vec<Res>,
}

#[derive(Debug, Clone)]
pub(crate) struct World {
    pub(crate) accounts: Vec<Account>,
    pub(crate) account_ids: Vec<String>,
}

/// K distinct 12-digit account ids without a leading zero, fixed by `seed`.
pub fn account_ids(seed: u64, k: u32) -> Vec<String> {
    let mut rng = Rng::new(derive(seed, STREAM_ACCOUNT_IDS));
    let mut seen = HashSet::with_capacity(k as usize);
    let mut out = Vec::with_capacity(k as usize);
    while out.len() < k as usize {
        let id = rng.range(100_000_000_000, 999_999_999_999);
        if seen.insert(id) {
            out.push(id.to_string());
        }
    }
    out
}

impl World {
    /// The world of `seed`: `accounts` accounts with ids drawn from the seed, or the ids
    /// `given` when it is not empty (then `accounts` is ignored).
    pub(crate) fn new(seed: u64, accounts: u32, given: &[String]) -> Self {
        let ids = if given.is_empty() {
            account_ids(seed, accounts.max(1))
        } else {
            given.to_vec()
        };
        let accounts = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let mut rng = Rng::new(derive(seed, STREAM_ACCOUNT + i as u64));
                Account::new(&mut rng, id.clone(), i)
            })
            .collect();
        Self {
            accounts,
            account_ids: ids,
        }
    }
}

fn weighted_region(rng: &mut Rng) -> &'static str {
    rng.weighted(REGIONS)
}

fn public_ip(rng: &mut Rng, documentation: bool) -> String {
    if documentation {
        let net = rng.choose(&["192.0.2", "198.51.100", "203.0.113"]);
        format!("{net}.{}", rng.range(1, 254))
    } else {
        let first = rng.choose(&[
            3u8, 18, 34, 35, 44, 52, 54, 62, 81, 85, 91, 109, 145, 176, 185, 212,
        ]);
        format!(
            "{first}.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            rng.range(1, 254)
        )
    }
}

fn cli_agent(rng: &mut Rng) -> String {
    if rng.permille(300) {
        let os = rng.choose(&[
            "Darwin/23.4.0 exe/x86_64",
            "Darwin/24.1.0 exe/arm64",
            "Linux/6.5.0-1018-aws exe/x86_64.ubuntu.22",
            "Windows/10 exe/AMD64",
        ]);
        format!(
            "aws-cli/2.{}.{} Python/3.11.{} {os} prompt/off command/",
            rng.range(13, 17),
            rng.range(0, 40),
            rng.range(4, 9)
        )
    } else {
        let (os, arch) = rng.choose(&[
            ("macos#23.4.0", "arm64"),
            ("macos#24.1.0", "x86_64"),
            ("linux#6.5.0-1018-aws", "x86_64"),
            ("linux#6.8.0-47-generic", "x86_64"),
            ("windows#10", "AMD64"),
        ]);
        format!(
            "aws-cli/2.{}.{} md/awscrt#0.{}.{} ua/2.0 os/{os} md/arch#{arch} lang/python#3.12.{} md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/prompt#off md/command#",
            rng.range(18, 22),
            rng.range(0, 40),
            rng.range(19, 23),
            rng.range(0, 19),
            rng.range(4, 8)
        )
    }
}

fn sdk_agent(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => {
            let v = rng.range(60, 99);
            let k = rng.range(200, 230);
            format!(
                "Boto3/1.35.{v} md/Botocore#1.35.{v} ua/2.0 os/linux#5.10.{k}-{}.amzn2.x86_64 md/arch#x86_64 lang/python#3.12.{} md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.35.{v}",
                rng.range(200, 230),
                rng.range(4, 8)
            )
        }
        1 => format!(
            "aws-sdk-go-v2/1.32.{} ua/2.0 os/linux lang/go#1.23.{} md/GOOS#linux md/GOARCH#amd64",
            rng.range(0, 7),
            rng.range(1, 4)
        ),
        2 => format!(
            "aws-sdk-java/2.29.{} Linux/5.10.{}-{}.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.13+11-LTS Java/17.0.13 vendor/Amazon.com_Inc. md/internal io/sync http/Apache cfg/retry-mode/legacy",
            rng.range(0, 30),
            rng.range(200, 230),
            rng.range(800, 900)
        ),
        _ => format!(
            "aws-sdk-js/3.{}.0 ua/2.0 os/linux#5.10.{}-{}.amzn2.x86_64 lang/js md/nodejs#20.18.0 exec-env/AWS_Lambda_nodejs20.x",
            rng.range(680, 700),
            rng.range(200, 230),
            rng.range(800, 900)
        ),
    }
}

fn terraform_agent(rng: &mut Rng) -> String {
    format!(
        "APN/1.0 HashiCorp/1.0 Terraform/1.{}.{} (+https://www.terraform.io) terraform-provider-aws/5.{}.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.32.{} ua/2.0 os/linux lang/go#1.23.{} md/GOOS#linux md/GOARCH#amd64",
        rng.range(8, 10),
        rng.range(0, 6),
        rng.range(70, 80),
        rng.range(0, 7),
        rng.range(1, 4)
    )
}

#[derive(Clone, Copy)]
enum Tool {
    Cli,
    Sdk,
    Terraform,
}

fn agent(rng: &mut Rng, tool: Tool, console_permille: u32, ip: usize) -> Agent {
    let (ua, style) = match tool {
        Tool::Cli => (cli_agent(rng), UaStyle::Cli),
        Tool::Sdk => (sdk_agent(rng), UaStyle::Fixed),
        Tool::Terraform => (terraform_agent(rng), UaStyle::Fixed),
    };
    Agent {
        ua,
        style,
        console_permille,
        browser: rng.choose(BROWSERS),
        ip,
    }
}

fn res(id: String, arn: String, region: &'static str, extra: String) -> Res {
    Res {
        id,
        arn,
        region,
        extra,
    }
}

impl Account {
    fn new(rng: &mut Rng, id: String, index: usize) -> Self {
        let company = COMPANIES[(index + rng.index(COMPANIES.len())) % COMPANIES.len()];
        let env = rng.choose(&["prod", "prod", "staging", "dev", "shared"]);
        // Most organisations run something in us-east-1: it is always one of
        // an account's regions, the home region or the first secondary one.
        // The first account plays the organisation's management account,
        // which lives in us-east-1.
        let home = weighted_region(rng);
        let mut regions = vec![if index == 0 { "us-east-1" } else { home }];
        if regions[0] != "us-east-1" {
            regions.push("us-east-1");
        }
        let extra_regions = 1 + rng.index(2);
        while regions.len() < 1 + extra_regions {
            let r = weighted_region(rng);
            if !regions.contains(&r) {
                regions.push(r);
            }
        }
        let mut apps: Vec<&'static str> = Vec::new();
        while apps.len() < 6 {
            let a = rng.choose(APPS);
            if !apps.contains(&a) {
                apps.push(a);
            }
        }
        // Ten source addresses: six from the documentation ranges (offices,
        // VPN egress), four other public addresses (NAT gateways, CI runners).
        let ips: Vec<String> = (0..10).map(|i| public_ip(rng, i < 6)).collect();
        let n_ips = ips.len();

        let mut acct = Account {
            root_arn: format!("arn:aws:iam::{id}:root"),
            root_key: fmt::iam_id(rng, "ASIA", 16),
            root_agent: agent(rng, Tool::Cli, 900, 0),
            id,
            company,
            env,
            regions,
            apps,
            ips,
            users: Vec::new(),
            roles: Vec::new(),
            human_roles: Vec::new(),
            workload_roles: Vec::new(),
            ci_roles: Vec::new(),
            sso_roles: Vec::new(),
            federated: Vec::new(),
            vpcs: Vec::new(),
            instances: Vec::new(),
            amis: Vec::new(),
            security_groups: Vec::new(),
            subnets: Vec::new(),
            volumes: Vec::new(),
            buckets: Vec::new(),
            db_instances: Vec::new(),
            functions: Vec::new(),
            kms_keys: Vec::new(),
            secrets: Vec::new(),
            topics: Vec::new(),
            queues: Vec::new(),
            tables: Vec::new(),
            parameters: Vec::new(),
            alarms: Vec::new(),
            trails: Vec::new(),
            repos: Vec::new(),
            load_balancers: Vec::new(),
            target_groups: Vec::new(),
        };
        acct.build_resources(rng);
        acct.build_principals(rng, n_ips);
        acct
    }

    /// A resource region: mostly the home region.
    fn res_region(&self, rng: &mut Rng) -> &'static str {
        if rng.permille(600) {
            self.regions[0]
        } else {
            rng.choose(&self.regions)
        }
    }

    fn build_resources(&mut self, rng: &mut Rng) {
        let acct = self.id.clone();
        for (i, region) in self.regions.iter().enumerate() {
            let id = format!("vpc-0{}", fmt::hex(rng, 16));
            let arn = format!("arn:aws:ec2:{region}:{acct}:vpc/{id}");
            self.vpcs.push(res(
                id,
                arn,
                region,
                format!("10.{}.0.0/16", 10 * i + rng.index(10)),
            ));
        }
        for _ in 0..30 {
            let region = self.res_region(rng);
            let id = format!("i-0{}", fmt::hex(rng, 16));
            let ty = rng.choose(&[
                "t3.micro",
                "t3.medium",
                "m5.large",
                "m6i.xlarge",
                "c6g.large",
                "r6i.2xlarge",
                "t4g.small",
            ]);
            let arn = format!("arn:aws:ec2:{region}:{acct}:instance/{id}");
            self.instances.push(res(id, arn, region, ty.to_owned()));
        }
        for _ in 0..4 {
            let region = self.res_region(rng);
            let id = format!("ami-0{}", fmt::hex(rng, 16));
            let arn = format!("arn:aws:ec2:{region}::image/{id}");
            self.amis.push(res(id, arn, region, String::new()));
        }
        let sg_names = ["default", "web-alb", "bastion", "launch-wizard-3"];
        for i in 0..8 {
            let region = self.res_region(rng);
            let id = format!("sg-0{}", fmt::hex(rng, 16));
            let name = if i < sg_names.len() {
                sg_names[i].to_owned()
            } else {
                format!("{}-sg", self.apps[i % self.apps.len()])
            };
            let arn = format!("arn:aws:ec2:{region}:{acct}:security-group/{id}");
            self.security_groups.push(res(id, arn, region, name));
        }
        for _ in 0..6 {
            let region = self.res_region(rng);
            let id = format!("subnet-0{}", fmt::hex(rng, 16));
            let az = format!("{region}{}", rng.choose(&["a", "b", "c"]));
            let arn = format!("arn:aws:ec2:{region}:{acct}:subnet/{id}");
            self.subnets.push(res(id, arn, region, az));
        }
        for _ in 0..12 {
            let region = self.res_region(rng);
            let id = format!("vol-0{}", fmt::hex(rng, 16));
            let arn = format!("arn:aws:ec2:{region}:{acct}:volume/{id}");
            self.volumes.push(res(id, arn, region, String::new()));
        }
        let purposes = [
            "logs",
            "assets",
            "backups",
            "data-lake",
            "artifacts",
            "uploads",
            "reports",
            "cloudtrail-logs",
            "static-site",
            "ml-models",
            "exports",
            "config-snapshots",
        ];
        let suffix = &acct[6..];
        for (i, p) in purposes.iter().enumerate() {
            let region = if i == 7 {
                "us-east-1"
            } else {
                self.res_region(rng)
            };
            let name = format!("{}-{p}-{}-{suffix}", self.company, self.env);
            let arn = format!("arn:aws:s3:::{name}");
            self.buckets.push(res(name, arn, region, (*p).to_owned()));
        }
        let db_kinds = ["db", "replica-1", "aurora-instance-1"];
        for i in 0..6 {
            let region = self.res_region(rng);
            let name = format!(
                "{}-{}-{}",
                self.apps[i],
                self.env,
                db_kinds[i % db_kinds.len()]
            );
            let arn = format!("arn:aws:rds:{region}:{acct}:db:{name}");
            let engine = rng.choose(&["postgres", "mysql", "aurora-postgresql"]);
            self.db_instances
                .push(res(name, arn, region, engine.to_owned()));
        }
        let fn_kinds = [
            "api-handler",
            "worker",
            "processor",
            "scheduler",
            "webhook",
            "resizer",
            "sync",
        ];
        for i in 0..10 {
            let region = self.res_region(rng);
            let name = format!(
                "{}-{}",
                self.apps[i % self.apps.len()],
                fn_kinds[i % fn_kinds.len()]
            );
            let arn = format!("arn:aws:lambda:{region}:{acct}:function:{name}");
            let runtime = rng.choose(&["python3.12", "nodejs20.x", "java21", "provided.al2023"]);
            self.functions
                .push(res(name, arn, region, runtime.to_owned()));
        }
        for i in 0..6 {
            let region = self.res_region(rng);
            let id = fmt::uuid4(rng);
            let alias = match i {
                0 => "alias/s3-default".to_owned(),
                1 => "alias/ebs-default".to_owned(),
                _ => format!("alias/{}-data", self.apps[i]),
            };
            let arn = format!("arn:aws:kms:{region}:{acct}:key/{id}");
            self.kms_keys.push(res(id, arn, region, alias));
        }
        let secret_kinds = ["db-credentials", "api-key", "oauth-client", "stripe-token"];
        for i in 0..6 {
            let region = self.res_region(rng);
            let name = format!("{}/{}/{}", self.env, self.apps[i], secret_kinds[i % 4]);
            let arn = format!(
                "arn:aws:secretsmanager:{region}:{acct}:secret:{name}-{}",
                fmt::alnum(rng, 6)
            );
            self.secrets.push(res(name, arn, region, String::new()));
        }
        for i in 0..5 {
            let region = self.res_region(rng);
            let name = format!(
                "{}-{}",
                self.apps[i],
                if i % 2 == 0 { "alerts" } else { "events" }
            );
            let arn = format!("arn:aws:sns:{region}:{acct}:{name}");
            self.topics.push(res(name, arn, region, String::new()));
        }
        for i in 0..6 {
            let region = self.res_region(rng);
            let name = format!(
                "{}-{}",
                self.apps[i],
                if i % 3 == 2 { "dlq" } else { "jobs" }
            );
            let arn = format!("arn:aws:sqs:{region}:{acct}:{name}");
            let url = format!("https://sqs.{region}.amazonaws.com/{acct}/{name}");
            self.queues.push(res(name, arn, region, url));
        }
        let table_kinds = ["state", "sessions", "events", "locks"];
        for i in 0..6 {
            let region = self.res_region(rng);
            let name = format!("{}-{}-{}", self.apps[i], table_kinds[i % 4], self.env);
            let arn = format!("arn:aws:dynamodb:{region}:{acct}:table/{name}");
            self.tables.push(res(name, arn, region, String::new()));
        }
        let param_kinds = ["db-host", "feature-flags", "api-endpoint", "log-level"];
        for i in 0..8 {
            let region = self.res_region(rng);
            let name = format!(
                "/{}/{}/{}",
                self.env,
                self.apps[i % self.apps.len()],
                param_kinds[i % 4]
            );
            let arn = format!("arn:aws:ssm:{region}:{acct}:parameter{name}");
            self.parameters.push(res(name, arn, region, String::new()));
        }
        let alarm_kinds = ["high-5xx", "cpu-high", "latency-p99", "queue-depth"];
        for i in 0..6 {
            let region = self.res_region(rng);
            let name = format!("{}-{}", self.apps[i], alarm_kinds[i % 4]);
            let arn = format!("arn:aws:cloudwatch:{region}:{acct}:alarm:{name}");
            self.alarms.push(res(name, arn, region, String::new()));
        }
        for name in [
            "management-events".to_owned(),
            format!("{}-org-trail", self.company),
        ] {
            let region = self.regions[0];
            let arn = format!("arn:aws:cloudtrail:{region}:{acct}:trail/{name}");
            self.trails.push(res(name, arn, region, String::new()));
        }
        for i in 0..4 {
            let region = self.res_region(rng);
            let name = format!("{}-service", self.apps[i]);
            let arn = format!("arn:aws:ecr:{region}:{acct}:repository/{name}");
            self.repos.push(res(name, arn, region, String::new()));
        }
        for i in 0..3 {
            let region = self.res_region(rng);
            let app = self.apps[i];
            let lb = format!("{app}-alb");
            let arn = format!(
                "arn:aws:elasticloadbalancing:{region}:{acct}:loadbalancer/app/{lb}/{}",
                fmt::hex(rng, 16)
            );
            self.load_balancers
                .push(res(lb, arn, region, String::new()));
            let tg = format!("{app}-tg");
            let arn = format!(
                "arn:aws:elasticloadbalancing:{region}:{acct}:targetgroup/{tg}/{}",
                fmt::hex(rng, 16)
            );
            self.target_groups.push(res(tg, arn, region, String::new()));
        }
    }

    fn build_principals(&mut self, rng: &mut Rng, n_ips: usize) {
        let acct = self.id.clone();
        let domain = format!("{}.example.com", self.company);
        // IAM users: fifteen people and five service users.
        let mut people: Vec<String> = Vec::new();
        while people.len() < 15 {
            let n = format!("{}.{}", rng.pick(FIRST), rng.pick(LAST));
            if !people.contains(&n) {
                people.push(n);
            }
        }
        for name in &people {
            let ip = rng.index(6);
            let tool = if rng.permille(850) {
                Tool::Cli
            } else {
                Tool::Sdk
            };
            let console = 250 + rng.below(300) as u32;
            self.users.push(User {
                arn: format!("arn:aws:iam::{acct}:user/{name}"),
                principal_id: fmt::iam_id(rng, "AIDA", 17),
                access_key: fmt::iam_id(rng, "AKIA", 16),
                console_key: fmt::iam_id(rng, "ASIA", 16),
                mfa: rng.permille(700),
                agent: agent(rng, tool, console, ip),
                name: name.clone(),
            });
        }
        let service_users: [(&str, Tool); 5] = [
            ("svc-backup", Tool::Sdk),
            ("ci-deployer", Tool::Cli),
            ("terraform", Tool::Terraform),
            ("monitoring-agent", Tool::Sdk),
            ("legacy-etl", Tool::Sdk),
        ];
        for (name, tool) in service_users {
            let ip = 6 + rng.index(n_ips - 6);
            self.users.push(User {
                arn: format!("arn:aws:iam::{acct}:user/{name}"),
                principal_id: fmt::iam_id(rng, "AIDA", 17),
                access_key: fmt::iam_id(rng, "AKIA", 16),
                console_key: fmt::iam_id(rng, "ASIA", 16),
                mfa: false,
                agent: agent(rng, tool, 0, ip),
                name: name.to_owned(),
            });
        }

        // Roles: six human roles, nine workload roles, three CI roles.
        for name in HUMAN_ROLES {
            let sessions: Vec<String> = (0..3)
                .map(|k| people[(k * 5 + rng.index(5)) % 15].clone())
                .collect();
            self.push_role(rng, name, RoleKind::Human, sessions, n_ips);
        }
        for i in 0..9 {
            let app = self.apps[i % self.apps.len()];
            let (name, sessions) = match i {
                0..=3 => {
                    let funcs: Vec<String> = self
                        .functions
                        .iter()
                        .filter(|f| f.id.starts_with(app))
                        .map(|f| f.id.clone())
                        .collect();
                    let sessions = if funcs.is_empty() {
                        vec![format!("{app}-worker")]
                    } else {
                        funcs
                    };
                    (format!("{app}-lambda-exec"), sessions)
                }
                4..=6 => (
                    format!("{app}-ecs-task"),
                    (0..2).map(|_| fmt::hex(rng, 32)).collect(),
                ),
                7 => (
                    format!("eks-node-group-{app}"),
                    (0..3)
                        .map(|_| rng.pick(&self.instances).id.clone())
                        .collect(),
                ),
                _ => (
                    format!("ec2-{app}-instance-profile"),
                    (0..3)
                        .map(|_| rng.pick(&self.instances).id.clone())
                        .collect(),
                ),
            };
            self.push_role(rng, &name, RoleKind::Workload, sessions, n_ips);
        }
        let ci: [(&str, Vec<String>); 3] = [
            ("github-actions-deploy", vec!["GitHubActions".to_owned()]),
            (
                "gitlab-runner-ci",
                (0..2)
                    .map(|_| format!("gitlab-ci-{}", rng.range(1_000_000, 9_999_999)))
                    .collect(),
            ),
            (
                "terraform-apply",
                (0..2)
                    .map(|_| {
                        format!(
                            "aws-go-sdk-{}",
                            rng.range(1_700_000_000_000, 1_800_000_000_000)
                        )
                    })
                    .collect(),
            ),
        ];
        for (name, sessions) in ci {
            self.push_role(rng, name, RoleKind::Ci, sessions, n_ips);
        }
        for set in SSO_SETS {
            let name = format!("AWSReservedSSO_{set}_{}", fmt::hex(rng, 16));
            let sessions: Vec<String> = (0..4)
                .map(|_| format!("{}@{domain}", rng.pick(&people)))
                .collect();
            self.push_role(rng, &name, RoleKind::Sso, sessions, n_ips);
        }

        // Federated users (GetFederationToken) issued by service users.
        for k in 0..3 {
            let name = format!("{}-{}", rng.choose(&["broker", "portal", "partner"]), k + 1);
            let issuer = 15 + rng.index(5);
            let ip = 6 + rng.index(n_ips - 6);
            self.federated.push(Federated {
                arn: format!("arn:aws:sts::{acct}:federated-user/{name}"),
                principal_id: format!("{acct}:{name}"),
                access_key: fmt::iam_id(rng, "ASIA", 16),
                issuer,
                agent: agent(rng, Tool::Sdk, 0, ip),
                name,
            });
        }
    }

    fn push_role(
        &mut self,
        rng: &mut Rng,
        name: &str,
        kind: RoleKind,
        session_names: Vec<String>,
        n_ips: usize,
    ) {
        let acct = &self.id;
        let arn = match kind {
            RoleKind::Sso => {
                format!(
                    "arn:aws:iam::{acct}:role/aws-reserved/sso.amazonaws.com/{}/{name}",
                    self.regions[0]
                )
            }
            _ => format!("arn:aws:iam::{acct}:role/{name}"),
        };
        let role_id = fmt::iam_id(rng, "AROA", 17);
        let sessions = session_names
            .into_iter()
            .map(|s| {
                let (tool, console, ip) = match kind {
                    RoleKind::Human => (Tool::Cli, 300 + rng.below(300) as u32, rng.index(6)),
                    RoleKind::Sso => (Tool::Cli, 550, rng.index(6)),
                    RoleKind::Workload => (Tool::Sdk, 0, 6 + rng.index(n_ips - 6)),
                    RoleKind::Ci => (
                        if rng.permille(500) {
                            Tool::Terraform
                        } else {
                            Tool::Cli
                        },
                        0,
                        6 + rng.index(n_ips - 6),
                    ),
                };
                Session {
                    arn: format!("arn:aws:sts::{acct}:assumed-role/{name}/{s}"),
                    principal_id: format!("{role_id}:{s}"),
                    access_key: fmt::iam_id(rng, "ASIA", 16),
                    agent: agent(rng, tool, console, ip),
                    mfa: matches!(kind, RoleKind::Human) && rng.permille(600),
                    name: s,
                }
            })
            .collect();
        let idx = self.roles.len();
        match kind {
            RoleKind::Human => self.human_roles.push(idx),
            RoleKind::Workload => self.workload_roles.push(idx),
            RoleKind::Ci => self.ci_roles.push(idx),
            RoleKind::Sso => self.sso_roles.push(idx),
        }
        self.roles.push(Role {
            name: name.to_owned(),
            arn,
            role_id,
            kind,
            sessions,
        });
    }
}
