//! Per-operation request parameters, response elements, resources and extras.
//!
//! Parameter names follow what CloudTrail records for each API (EC2's
//! `instancesSet.items[].instanceId`, S3's `bucketName`/`Host`/`key`, RDS's
//! `dBInstanceIdentifier`, …). Resources come from the account's pools, so the
//! same instance, bucket, key or function appears in many events.

use crate::catalog::Op;
use crate::fmt;
use crate::identity::Principal;
use crate::json::{J, arr, items, obj};
use crate::rng::Rng;
use crate::world::{Account, Res, RoleKind, World};

/// Everything about the event that is fixed before the operation is built.
#[derive(Debug)]
pub(crate) struct Cx<'a> {
    pub(crate) world: &'a World,
    pub(crate) acct: &'a Account,
    pub(crate) now: i64,
    /// The region the caller talks to unless the operation targets a resource.
    pub(crate) region: &'static str,
    pub(crate) who: Principal<'a>,
}

impl Cx<'_> {
    fn service(&self) -> bool {
        matches!(self.who, Principal::Service(_))
    }
}

/// What an operation contributes to the record.
#[derive(Debug)]
pub(crate) struct Body<'a> {
    pub(crate) region: &'static str,
    pub(crate) req: J<'a>,
    pub(crate) resp: J<'a>,
    pub(crate) extra: Option<J<'a>>,
    pub(crate) resources: Option<J<'a>>,
    /// `tlsDetails.clientProvidedHostHeader` when it is not `{svc}.{region}.amazonaws.com`.
    pub(crate) host: Option<String>,
    /// A data event (`eventCategory` "Data", `managementEvent` false).
    pub(crate) data: bool,
    /// S3-style 16-hex request id instead of a UUID.
    pub(crate) s3_request_id: bool,
    /// The resource (ARN or name) the call targets, for error messages.
    pub(crate) target: Option<&'a str>,
    /// `eventType` AwsServiceEvent.
    pub(crate) service_event: bool,
    /// ConsoleLogin failure (errorMessage without errorCode, as CloudTrail records it).
    pub(crate) login_failed: bool,
}

impl<'a> Body<'a> {
    fn new(region: &'static str) -> Self {
        Self {
            region,
            req: J::Null,
            resp: J::Null,
            extra: None,
            resources: None,
            host: None,
            data: false,
            s3_request_id: false,
            target: None,
            service_event: false,
            login_failed: false,
        }
    }

    fn on(mut self, r: &'a Res) -> Self {
        self.region = r.region;
        self.target = Some(&r.arn);
        self
    }
}

/// Picks from `pool`, preferring an entry in `region`: a uniformly random
/// start, then the first entry in `region` scanning forward (pools are small).
fn pick_in<'b>(rng: &mut Rng, pool: &'b [Res], region: &str) -> &'b Res {
    let start = rng.index(pool.len());
    let n = pool.len();
    (0..n)
        .map(|k| &pool[(start + k) % n])
        .find(|r| r.region == region)
        .unwrap_or(&pool[start])
}

fn resource<'a>(acct: &'a Account, ty: &'static str, arn: &'a str) -> J<'a> {
    obj! { "accountId": acct.id.as_str(), "type": ty, "ARN": arn }
}

fn ec2_state<'a>(id: &'a str, cur: (i64, &'static str), prev: (i64, &'static str)) -> J<'a> {
    obj! {
        "instanceId": id,
        "currentState": obj! { "code": cur.0, "name": cur.1 },
        "previousState": obj! { "code": prev.0, "name": prev.1 },
    }
}

fn private_ip(rng: &mut Rng) -> String {
    format!("10.0.{}.{}", rng.below(256), rng.range(4, 254))
}

fn s3_host(b: &Res) -> String {
    format!("{}.s3.{}.amazonaws.com", b.id, b.region)
}

fn s3_extra<'a>(rng: &mut Rng, bytes_in: u64, bytes_out: u64) -> J<'a> {
    obj! {
        "SignatureVersion": "SigV4",
        "CipherSuite": "TLS_AES_128_GCM_SHA256",
        "bytesTransferredIn": bytes_in,
        "AuthenticationMethod": "AuthHeader",
        "x-amz-id-2": fmt::b64(rng, 76),
        "bytesTransferredOut": bytes_out,
    }
}

/// An object key shaped by what the bucket is for.
fn object_key(rng: &mut Rng, acct: &Account, b: &Res, now: i64) -> String {
    let day = fmt::ymd_slash(now);
    let app = rng.choose(&acct.apps);
    match b.extra.as_str() {
        "logs" => format!(
            "{app}/{day}/{:02}/part-{:05}.json.gz",
            (now / 3600) % 24,
            rng.below(400)
        ),
        "cloudtrail-logs" => format!(
            "AWSLogs/{}/CloudTrail/{}/{day}/{}_CloudTrail_{}_{}Z_{}.json.gz",
            acct.id,
            b.region,
            acct.id,
            b.region,
            fmt::rfc3339(now - now % 300)
                .replace(['-', ':'], "")
                .trim_end_matches("00Z"),
            fmt::alnum(rng, 16)
        ),
        "backups" => format!("db/{app}/{day}/dump-{}.sql.gz", rng.below(4)),
        "data-lake" => format!(
            "raw/{app}/year={}/part-{:05}.snappy.parquet",
            &day[..4],
            rng.below(2_000)
        ),
        "uploads" => format!(
            "user-uploads/{}/{}.jpg",
            rng.range(1_000, 9_999),
            fmt::hex(rng, 12)
        ),
        "reports" => format!("reports/{day}/{app}-daily-summary.csv"),
        "artifacts" => format!("builds/{app}/{}.zip", fmt::hex(rng, 12)),
        "ml-models" => format!("models/{app}/v{}/model.tar.gz", rng.range(1, 40)),
        "static-site" | "assets" => {
            let (dir, ext) =
                rng.choose(&[("js", "js"), ("css", "css"), ("img", "png"), ("img", "svg")]);
            format!("static/{dir}/{}.{ext}", fmt::hex(rng, 8))
        }
        _ => format!("{app}/{}/{}.json", &day[..7], fmt::hex(rng, 10)),
    }
}

fn log_group(rng: &mut Rng, acct: &Account) -> String {
    if rng.permille(650) {
        format!("/aws/lambda/{}", rng.pick(&acct.functions).id)
    } else {
        format!("/ecs/{}", rng.pick(&acct.apps))
    }
}

/// Port, engine version and license model of an RDS engine.
fn engine_details(engine: &str) -> (i64, &'static str, &'static str) {
    match engine {
        "mysql" => (3306, "8.0.39", "general-public-license"),
        "aurora-postgresql" => (5432, "16.4", "postgresql-license"),
        _ => (5432, "16.4", "postgresql-license"),
    }
}

const POLICIES: &[&str] = &[
    "arn:aws:iam::aws:policy/ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonS3FullAccess",
    "arn:aws:iam::aws:policy/AdministratorAccess",
    "arn:aws:iam::aws:policy/AmazonEC2FullAccess",
    "arn:aws:iam::aws:policy/CloudWatchLogsReadOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
];

const TRUST_POLICY: &str = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"Service\":\"lambda.amazonaws.com\"},\"Action\":\"sts:AssumeRole\"}]}";

const CONFIG_RULES: &[&str] = &[
    "s3-bucket-public-read-prohibited",
    "encrypted-volumes",
    "iam-user-mfa-enabled",
    "root-account-mfa-enabled",
    "restricted-ssh",
    "cloudtrail-enabled",
];

fn lambda_config<'a>(rng: &mut Rng, acct: &'a Account, f: &'a Res, now: i64) -> J<'a> {
    let role = &acct.roles[rng.choose(&acct.workload_roles)];
    obj! {
        "functionName": f.id.as_str(),
        "functionArn": f.arn.as_str(),
        "runtime": f.extra.as_str(),
        "role": role.arn.as_str(),
        "handler": "index.handler",
        "codeSize": rng.range(2_000, 40_000_000),
        "description": "",
        "timeout": 30,
        "memorySize": rng.choose(&[128i64, 256, 512, 1024]),
        "lastModified": format!("{}.000+0000", &fmt::rfc3339(now)[..19]),
        "codeSha256": format!("{}=", fmt::b64(rng, 43)),
        "version": "$LATEST",
        "tracingConfig": obj! { "mode": "PassThrough" },
        "revisionId": fmt::uuid4(rng),
        "state": "Active",
        "lastUpdateStatus": "InProgress",
        "packageType": "Zip",
        "architectures": arr!["x86_64"],
        "ephemeralStorage": obj! { "size": 512 },
    }
}

/// Builds the operation-specific part of one record.
pub(crate) fn build<'a>(op: Op, cx: &Cx<'a>, rng: &mut Rng) -> Body<'a> {
    let a = cx.acct;
    let acct = a.id.as_str();
    let now = cx.now;
    let mut b = Body::new(cx.region);
    match op {
        // ---------------------------------------------------------------- EC2
        Op::DescribeInstances => {
            let x = rng.below(10);
            if x < 3 {
                let i = pick_in(rng, &a.instances, cx.region);
                b = b.on(i);
                b.req = obj! {
                    "instancesSet": items(vec![obj! { "instanceId": i.id.as_str() }]),
                    "filterSet": obj! {},
                };
            } else if x < 5 {
                b.req = obj! {
                    "maxResults": 1000,
                    "instancesSet": obj! {},
                    "filterSet": items(vec![obj! {
                        "name": "instance-state-name",
                        "valueSet": items(vec![obj! { "value": "running" }]),
                    }]),
                };
            } else {
                b.req = obj! { "instancesSet": obj! {}, "filterSet": obj! {} };
            }
        }
        Op::DescribeSecurityGroups => {
            let sg = pick_in(rng, &a.security_groups, cx.region);
            if rng.permille(500) {
                b = b.on(sg);
                b.req = obj! {
                    "securityGroupSet": obj! {},
                    "securityGroupIdSet": items(vec![obj! { "groupId": sg.id.as_str() }]),
                    "filterSet": obj! {},
                };
            } else {
                b.req = obj! { "securityGroupSet": obj! {}, "securityGroupIdSet": obj! {}, "filterSet": obj! {} };
            }
        }
        Op::DescribeVolumes => {
            let i = pick_in(rng, &a.instances, cx.region);
            b = b.on(i);
            b.req = obj! {
                "volumeSet": obj! {},
                "filterSet": items(vec![obj! {
                    "name": "attachment.instance-id",
                    "valueSet": items(vec![obj! { "value": i.id.as_str() }]),
                }]),
            };
        }
        Op::DescribeVpcs => {
            b.req = obj! { "vpcSet": obj! {}, "filterSet": obj! {} };
        }
        Op::RunInstances => {
            let i = pick_in(rng, &a.instances, cx.region);
            b = b.on(i);
            let ami = pick_in(rng, &a.amis, i.region);
            let sg = pick_in(rng, &a.security_groups, i.region);
            let subnet = pick_in(rng, &a.subnets, i.region);
            let vpc = pick_in(rng, &a.vpcs, i.region);
            let token = fmt::uuid4(rng);
            let ip = private_ip(rng);
            let app = rng.choose(&a.apps);
            b.req = obj! {
                "instancesSet": items(vec![obj! { "imageId": ami.id.as_str(), "minCount": 1, "maxCount": 1 }]),
                "groupSet": items(vec![obj! { "groupId": sg.id.as_str() }]),
                "instanceType": i.extra.as_str(),
                "blockDeviceMapping": obj! {},
                "monitoring": obj! { "enabled": false },
                "disableApiTermination": false,
                "disableApiStop": false,
                "clientToken": token.clone(),
                "subnetId": subnet.id.as_str(),
                "tagSpecificationSet": items(vec![obj! {
                    "resourceType": "instance",
                    "tags": arr![obj! { "key": "Name", "value": format!("{app}-worker") }],
                }]),
            };
            b.resp = obj! {
                "requestId": fmt::uuid4(rng),
                "reservationId": format!("r-0{}", fmt::hex(rng, 16)),
                "ownerId": acct,
                "groupSet": obj! {},
                "instancesSet": items(vec![obj! {
                    "instanceId": i.id.as_str(),
                    "imageId": ami.id.as_str(),
                    "instanceState": obj! { "code": 0, "name": "pending" },
                    "privateDnsName": format!("ip-{}.{}.compute.internal", ip.replace('.', "-"), i.region),
                    "amiLaunchIndex": 0,
                    "productCodes": obj! {},
                    "instanceType": i.extra.as_str(),
                    "launchTime": now * 1000,
                    "placement": obj! { "availabilityZone": subnet.extra.as_str(), "tenancy": "default" },
                    "monitoring": obj! { "state": "disabled" },
                    "subnetId": subnet.id.as_str(),
                    "vpcId": vpc.id.as_str(),
                    "privateIpAddress": ip,
                    "stateReason": obj! { "code": "pending", "message": "pending" },
                    "architecture": "x86_64",
                    "rootDeviceType": "ebs",
                    "rootDeviceName": "/dev/xvda",
                    "blockDeviceMapping": obj! {},
                    "virtualizationType": "hvm",
                    "hypervisor": "xen",
                    "clientToken": token,
                    "groupSet": items(vec![obj! { "groupId": sg.id.as_str(), "groupName": sg.extra.as_str() }]),
                    "sourceDestCheck": true,
                    "ebsOptimized": false,
                    "enaSupport": true,
                    "metadataOptions": obj! {
                        "state": "pending",
                        "httpTokens": "required",
                        "httpPutResponseHopLimit": 2,
                        "httpEndpoint": "enabled",
                    },
                }]),
            };
        }
        Op::StartInstances | Op::StopInstances | Op::TerminateInstances => {
            let i = pick_in(rng, &a.instances, cx.region);
            b = b.on(i);
            let (cur, prev) = match op {
                Op::StartInstances => ((0, "pending"), (80, "stopped")),
                Op::StopInstances => ((64, "stopping"), (16, "running")),
                _ => ((32, "shutting-down"), (16, "running")),
            };
            let set = items(vec![obj! { "instanceId": i.id.as_str() }]);
            b.req = if op == Op::StopInstances {
                obj! { "instancesSet": set, "force": false }
            } else {
                obj! { "instancesSet": set }
            };
            b.resp = obj! {
                "requestId": fmt::uuid4(rng),
                "instancesSet": items(vec![ec2_state(&i.id, cur, prev)]),
            };
        }
        Op::AuthorizeSecurityGroupIngress => {
            let sg = pick_in(rng, &a.security_groups, cx.region);
            b = b.on(sg);
            let port = rng.choose(&[22i64, 443, 3389, 5432, 8080]);
            let cidr = if rng.permille(150) {
                "0.0.0.0/0".to_owned()
            } else {
                format!("{}/32", rng.pick(&a.ips))
            };
            b.req = obj! {
                "groupId": sg.id.as_str(),
                "ipPermissions": items(vec![obj! {
                    "ipProtocol": "tcp",
                    "fromPort": port,
                    "toPort": port,
                    "groups": obj! {},
                    "ipRanges": items(vec![obj! { "cidrIp": cidr.clone() }]),
                    "ipv6Ranges": obj! {},
                    "prefixListIds": obj! {},
                }]),
            };
            b.resp = obj! {
                "requestId": fmt::uuid4(rng),
                "_return": true,
                "securityGroupRuleSet": items(vec![obj! {
                    "groupOwnerId": acct,
                    "groupId": sg.id.as_str(),
                    "securityGroupRuleId": format!("sgr-0{}", fmt::hex(rng, 16)),
                    "isEgress": false,
                    "ipProtocol": "tcp",
                    "fromPort": port,
                    "toPort": port,
                    "cidrIpv4": cidr,
                }]),
            };
        }
        Op::CreateSecurityGroup => {
            let sg = pick_in(rng, &a.security_groups, cx.region);
            b = b.on(sg);
            let vpc = pick_in(rng, &a.vpcs, sg.region);
            b.req = obj! {
                "groupName": sg.extra.as_str(),
                "groupDescription": format!("{} security group", sg.extra),
                "vpcId": vpc.id.as_str(),
            };
            b.resp = obj! {
                "requestId": fmt::uuid4(rng),
                "_return": true,
                "groupId": sg.id.as_str(),
                "securityGroupArn": sg.arn.as_str(),
            };
        }
        Op::CreateTags => {
            let i = pick_in(rng, &a.instances, cx.region);
            b = b.on(i);
            b.req = obj! {
                "resourcesSet": items(vec![obj! { "resourceId": i.id.as_str() }]),
                "tagSet": items(vec![
                    obj! { "key": "Owner", "value": cx.who.short_name() },
                    obj! { "key": "Environment", "value": a.env },
                ]),
            };
            b.resp = obj! { "requestId": fmt::uuid4(rng), "_return": true };
        }

        // ----------------------------------------------------------------- S3
        Op::ListBuckets => {
            b.region = "us-east-1";
            b.s3_request_id = true;
            b.req = obj! { "Host": "s3.amazonaws.com" };
            b.host = Some("s3.amazonaws.com".to_owned());
            let out = rng.range(800, 9_000);
            b.extra = Some(s3_extra(rng, 0, out));
        }
        Op::GetBucketAcl
        | Op::GetBucketLocation
        | Op::GetBucketPolicy
        | Op::GetBucketVersioning
        | Op::PutBucketPolicy
        | Op::CreateBucket
        | Op::DeleteBucket
        | Op::PutBucketPublicAccessBlock => {
            let bk = if cx.service() {
                // Log delivery services check the log buckets.
                &a.buckets[if rng.permille(600) { 7 } else { 0 }]
            } else {
                pick_in(rng, &a.buckets, cx.region)
            };
            b = b.on(bk);
            b.s3_request_id = true;
            let host = s3_host(bk);
            let name = bk.id.as_str();
            b.req = match op {
                Op::GetBucketAcl => obj! { "bucketName": name, "Host": host.clone(), "acl": "" },
                Op::GetBucketLocation => {
                    obj! { "bucketName": name, "Host": host.clone(), "location": "" }
                }
                Op::GetBucketPolicy => {
                    obj! { "bucketName": name, "Host": host.clone(), "policy": "" }
                }
                Op::GetBucketVersioning => {
                    obj! { "bucketName": name, "Host": host.clone(), "versioning": "" }
                }
                Op::PutBucketPolicy => obj! {
                    "bucketPolicy": obj! {
                        "Version": "2012-10-17",
                        "Statement": arr![obj! {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": arr![bk.arn.as_str(), format!("{}/*", bk.arn)],
                            "Condition": obj! { "Bool": obj! { "aws:SecureTransport": "false" } },
                        }],
                    },
                    "bucketName": name,
                    "Host": host.clone(),
                    "policy": "",
                },
                Op::CreateBucket if bk.region != "us-east-1" => obj! {
                    "CreateBucketConfiguration": obj! {
                        "LocationConstraint": bk.region,
                        "xmlns": "http://s3.amazonaws.com/doc/2006-03-01/",
                    },
                    "bucketName": name,
                    "Host": host.clone(),
                },
                Op::PutBucketPublicAccessBlock => obj! {
                    "publicAccessBlock": "",
                    "bucketName": name,
                    "Host": host.clone(),
                    "PublicAccessBlockConfiguration": obj! {
                        "xmlns": "http://s3.amazonaws.com/doc/2006-03-01/",
                        "RestrictPublicBuckets": true,
                        "BlockPublicPolicy": true,
                        "BlockPublicAcls": true,
                        "IgnorePublicAcls": true,
                    },
                },
                _ => obj! { "bucketName": name, "Host": host.clone() },
            };
            b.host = Some(host);
            let out = if cx.service() { 0 } else { rng.range(0, 2_000) };
            b.extra = Some(s3_extra(rng, 0, out));
            b.resources = Some(arr![resource(a, "AWS::S3::Bucket", &bk.arn)]);
        }
        Op::GetObject | Op::HeadObject | Op::PutObject | Op::DeleteObject => {
            let bk = if cx.service() {
                &a.buckets[if rng.permille(700) { 7 } else { 0 }]
            } else {
                pick_in(rng, &a.buckets, cx.region)
            };
            b.region = bk.region;
            b.target = Some(&bk.arn);
            b.data = true;
            b.s3_request_id = true;
            let host = s3_host(bk);
            let key = object_key(rng, a, bk, now);
            let obj_arn = format!("{}/{key}", bk.arn);
            let size = rng.range(200, 8_000_000);
            b.req = if op == Op::PutObject && cx.service() {
                obj! { "bucketName": bk.id.as_str(), "Host": host.clone(), "x-amz-acl": "bucket-owner-full-control", "key": key }
            } else {
                obj! { "bucketName": bk.id.as_str(), "Host": host.clone(), "key": key }
            };
            let (bytes_in, bytes_out) = match op {
                Op::GetObject => (0, size),
                Op::PutObject => (size, 0),
                _ => (0, 0),
            };
            if op == Op::PutObject {
                b.resp = obj! {
                    "x-amz-server-side-encryption": "AES256",
                    "x-amz-version-id": fmt::b64url(rng, 32),
                };
            }
            b.extra = Some(s3_extra(rng, bytes_in, bytes_out));
            b.resources = Some(arr![
                obj! { "type": "AWS::S3::Object", "ARN": obj_arn },
                resource(a, "AWS::S3::Bucket", &bk.arn),
            ]);
            b.host = Some(host);
        }

        // ---------------------------------------------------------------- IAM
        Op::GetRole
        | Op::ListAttachedRolePolicies
        | Op::AttachRolePolicy
        | Op::PutRolePolicy
        | Op::CreateRole => {
            let role = rng.pick(&a.roles);
            b.target = Some(&role.arn);
            let name = role.name.as_str();
            match op {
                Op::GetRole | Op::ListAttachedRolePolicies => b.req = obj! { "roleName": name },
                Op::AttachRolePolicy => {
                    b.req = obj! { "roleName": name, "policyArn": rng.choose(POLICIES) };
                }
                Op::PutRolePolicy => {
                    b.req = obj! {
                        "roleName": name,
                        "policyName": format!("{}-inline", rng.pick(&a.apps)),
                        "policyDocument": "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":[\"s3:GetObject\",\"s3:PutObject\"],\"Resource\":\"*\"}]}",
                    };
                }
                _ => {
                    b.req = obj! {
                        "roleName": name,
                        "description": "Created by Terraform",
                        "assumeRolePolicyDocument": TRUST_POLICY,
                    };
                    b.resp = obj! {
                        "role": obj! {
                            "path": "/",
                            "roleName": name,
                            "roleId": role.role_id.as_str(),
                            "arn": role.arn.as_str(),
                            "createDate": fmt::us_datetime(now),
                            "assumeRolePolicyDocument": "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22Service%22%3A%22lambda.amazonaws.com%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%7D%5D%7D",
                        },
                    };
                }
            }
        }
        Op::ListRoles | Op::ListUsers => {
            b.req = if rng.permille(500) {
                obj! { "maxItems": 1000 }
            } else {
                J::Null
            };
        }
        Op::GetUser
        | Op::CreateUser
        | Op::DeleteUser
        | Op::AttachUserPolicy
        | Op::CreateAccessKey => {
            let u = rng.pick(&a.users);
            b.target = Some(&u.arn);
            let name = u.name.as_str();
            match op {
                Op::CreateUser => {
                    b.req = obj! { "userName": name, "tags": arr![] };
                    b.resp = obj! {
                        "user": obj! {
                            "path": "/",
                            "userName": name,
                            "userId": u.principal_id.as_str(),
                            "arn": u.arn.as_str(),
                            "createDate": fmt::us_datetime(now),
                        },
                    };
                }
                Op::AttachUserPolicy => {
                    b.req = obj! { "userName": name, "policyArn": rng.choose(POLICIES) };
                }
                Op::CreateAccessKey => {
                    b.req = obj! { "userName": name };
                    b.resp = obj! {
                        "accessKey": obj! {
                            "userName": name,
                            "accessKeyId": fmt::iam_id(rng, "AKIA", 16),
                            "status": "Active",
                            "createDate": fmt::us_datetime(now),
                        },
                    };
                }
                _ => b.req = obj! { "userName": name },
            }
        }

        // ---------------------------------------------------------------- STS
        Op::AssumeRole => {
            let pool = if cx.service() || rng.permille(500) {
                &a.workload_roles
            } else {
                &a.human_roles
            };
            let role = &a.roles[rng.choose(pool)];
            let s = rng.pick(&role.sessions);
            b.target = Some(&role.arn);
            b.region = if rng.permille(850) {
                "us-east-1"
            } else {
                cx.region
            };
            if b.region == "us-east-1" {
                b.host = Some("sts.amazonaws.com".to_owned());
            }
            b.req = if cx.service() {
                obj! { "roleArn": role.arn.as_str(), "roleSessionName": s.name.as_str() }
            } else {
                obj! { "roleArn": role.arn.as_str(), "roleSessionName": s.name.as_str(), "durationSeconds": 3600 }
            };
            b.resp = obj! {
                "credentials": obj! {
                    "accessKeyId": s.access_key.as_str(),
                    "sessionToken": format!("IQoJb3JpZ2luX2VjE{}", fmt::b64(rng, 380)),
                    "expiration": fmt::us_datetime(now + 3600),
                },
                "assumedRoleUser": obj! {
                    "assumedRoleId": s.principal_id.as_str(),
                    "arn": s.arn.as_str(),
                },
            };
            b.resources = Some(arr![resource(a, "AWS::IAM::Role", &role.arn)]);
        }
        Op::GetCallerIdentity => {
            b.region = if rng.permille(700) {
                "us-east-1"
            } else {
                cx.region
            };
            if b.region == "us-east-1" {
                b.host = Some("sts.amazonaws.com".to_owned());
            }
        }

        // ---------------------------------------------------------------- KMS
        Op::Decrypt
        | Op::GenerateDataKey
        | Op::Encrypt
        | Op::DescribeKey
        | Op::ScheduleKeyDeletion
        | Op::DisableKey
        | Op::RotateKey => {
            let k = pick_in(rng, &a.kms_keys, cx.region);
            b = b.on(k);
            let key_ref: J<'a> = if rng.permille(300) {
                J::Str(&k.extra)
            } else {
                J::Str(&k.arn)
            };
            let enc_ctx = match rng.below(3) {
                0 => {
                    let bk = rng.pick(&a.buckets);
                    obj! { "aws:s3:arn": bk.arn.as_str() }
                }
                1 => {
                    let s = rng.pick(&a.secrets);
                    obj! { "SecretARN": s.arn.as_str(), "SecretVersionId": fmt::uuid4(rng) }
                }
                _ => {
                    let f = rng.pick(&a.functions);
                    obj! { "aws:lambda:FunctionArn": f.arn.as_str() }
                }
            };
            match op {
                Op::Decrypt => {
                    b.req = obj! { "encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": enc_ctx };
                }
                Op::GenerateDataKey => {
                    b.req = obj! { "keyId": key_ref, "encryptionContext": enc_ctx, "keySpec": "AES_256" };
                }
                Op::Encrypt => {
                    b.req = obj! { "keyId": key_ref, "encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": enc_ctx };
                }
                Op::DescribeKey | Op::DisableKey => b.req = obj! { "keyId": key_ref },
                Op::ScheduleKeyDeletion => {
                    let days = rng.range(7, 30) as i64;
                    b.req = obj! { "keyId": key_ref, "pendingWindowInDays": days };
                    b.resp = obj! {
                        "keyId": k.arn.as_str(),
                        "deletionDate": fmt::us_datetime(now - now % 86_400 + (days + 1) * 86_400),
                        "keyState": "PendingDeletion",
                        "pendingWindowInDays": days,
                    };
                }
                _ => {
                    // RotateKey: an AwsServiceEvent from KMS's automatic rotation.
                    b.service_event = true;
                    b.extra = Some(obj! { "keyId": k.arn.as_str() });
                }
            }
            b.resources = Some(arr![resource(a, "AWS::KMS::Key", &k.arn)]);
        }
        Op::ListAliases => {
            b.req = if rng.permille(400) {
                obj! { "limit": 100 }
            } else {
                J::Null
            };
        }

        // ---------------------------------------------------------------- RDS
        Op::DescribeDBInstances => {
            if rng.permille(500) {
                let d = pick_in(rng, &a.db_instances, cx.region);
                b = b.on(d);
                b.req = obj! { "dBInstanceIdentifier": d.id.as_str() };
            } else {
                b.req = obj! { "maxRecords": 100 };
            }
        }
        Op::DescribeDBSnapshots => {
            let d = pick_in(rng, &a.db_instances, cx.region);
            b = b.on(d);
            b.req = obj! { "dBInstanceIdentifier": d.id.as_str(), "includeShared": false, "includePublic": false };
        }
        Op::CreateDBSnapshot => {
            let d = pick_in(rng, &a.db_instances, cx.region);
            b = b.on(d);
            let snap = format!("{}-manual-{}", d.id, fmt::ymd_slash(now).replace('/', "-"));
            let (port, version, license) = engine_details(&d.extra);
            let key = pick_in(rng, &a.kms_keys, d.region);
            b.req = obj! { "dBSnapshotIdentifier": snap.clone(), "dBInstanceIdentifier": d.id.as_str() };
            b.resp = obj! {
                "dBSnapshotIdentifier": snap.clone(),
                "dBInstanceIdentifier": d.id.as_str(),
                "engine": d.extra.as_str(),
                "allocatedStorage": 100,
                "status": "creating",
                "port": port,
                "availabilityZone": format!("{}a", d.region),
                "vpcId": pick_in(rng, &a.vpcs, d.region).id.as_str(),
                "instanceCreateTime": fmt::us_datetime(now - 86_400 * 200),
                "masterUsername": "dbadmin",
                "engineVersion": version,
                "licenseModel": license,
                "snapshotType": "manual",
                "percentProgress": 0,
                "storageType": "gp3",
                "encrypted": true,
                "kmsKeyId": key.arn.as_str(),
                "dBSnapshotArn": format!("arn:aws:rds:{}:{acct}:snapshot:{snap}", d.region),
                "iAMDatabaseAuthenticationEnabled": false,
                "dbiResourceId": fmt::iam_id(rng, "db-", 26),
                "snapshotTarget": "region",
            };
        }
        Op::ModifyDBInstance | Op::DeleteDBInstance => {
            let d = pick_in(rng, &a.db_instances, cx.region);
            b = b.on(d);
            let status;
            if op == Op::ModifyDBInstance {
                b.req = obj! { "dBInstanceIdentifier": d.id.as_str(), "backupRetentionPeriod": 7, "applyImmediately": true };
                status = "modifying";
            } else {
                b.req = obj! {
                    "dBInstanceIdentifier": d.id.as_str(),
                    "skipFinalSnapshot": false,
                    "finalDBSnapshotIdentifier": format!("{}-final", d.id),
                    "deleteAutomatedBackups": false,
                };
                status = "deleting";
            }
            b.resp = obj! {
                "dBInstanceIdentifier": d.id.as_str(),
                "dBInstanceClass": "db.r6g.large",
                "engine": d.extra.as_str(),
                "dBInstanceStatus": status,
                "masterUsername": "dbadmin",
                "allocatedStorage": 100,
                "backupRetentionPeriod": 7,
                "multiAZ": true,
                "engineVersion": engine_details(&d.extra).1,
                "publiclyAccessible": false,
                "storageType": "gp3",
                "dbiResourceId": fmt::iam_id(rng, "db-", 26),
                "dBInstanceArn": d.arn.as_str(),
                "deletionProtection": false,
            };
        }

        // ------------------------------------------------------------- Lambda
        Op::Invoke => {
            let f = pick_in(rng, &a.functions, cx.region);
            b = b.on(f);
            b.data = true;
            let workload =
                matches!(cx.who, Principal::Session(r, _) if r.kind == RoleKind::Workload);
            b.req = if workload && rng.permille(600) {
                let q = pick_in(rng, &a.queues, f.region);
                obj! { "functionName": f.arn.as_str(), "sourceArn": q.arn.as_str() }
            } else {
                obj! { "functionName": f.arn.as_str() }
            };
            b.extra = Some(obj! { "functionVersion": format!("{}:$LATEST", f.arn) });
            b.resources = Some(arr![resource(a, "AWS::Lambda::Function", &f.arn)]);
        }
        Op::GetFunction20150331v2 => {
            let f = pick_in(rng, &a.functions, cx.region);
            b = b.on(f);
            b.req = obj! { "functionName": f.id.as_str() };
        }
        Op::ListFunctions20150331 => {}
        Op::UpdateFunctionCode20150331v2 => {
            let f = pick_in(rng, &a.functions, cx.region);
            b = b.on(f);
            b.req = obj! {
                "functionName": f.id.as_str(),
                "s3Bucket": a.buckets[4].id.as_str(),
                "s3Key": format!("builds/{}/{}.zip", f.id, fmt::hex(rng, 12)),
                "publish": true,
                "dryRun": false,
            };
            b.resp = lambda_config(rng, a, f, now);
        }
        Op::UpdateFunctionConfiguration20150331v2 => {
            let f = pick_in(rng, &a.functions, cx.region);
            b = b.on(f);
            b.req = obj! { "functionName": f.id.as_str(), "memorySize": 1024, "timeout": 60 };
            b.resp = lambda_config(rng, a, f, now);
        }

        // --------------------------------------------------------- CloudTrail
        Op::DescribeTrails => {
            b.req = obj! { "trailNameList": arr![], "includeShadowTrails": true };
        }
        Op::GetTrailStatus | Op::StopLogging | Op::DeleteTrail => {
            let t = rng.pick(&a.trails);
            b = b.on(t);
            b.req = obj! { "name": t.arn.as_str() };
        }
        Op::UpdateTrail => {
            let t = rng.pick(&a.trails);
            b = b.on(t);
            let validation = rng.permille(500);
            b.req = obj! { "name": t.id.as_str(), "isMultiRegionTrail": true, "enableLogFileValidation": validation };
            b.resp = obj! {
                "name": t.id.as_str(),
                "s3BucketName": a.buckets[7].id.as_str(),
                "includeGlobalServiceEvents": true,
                "isMultiRegionTrail": true,
                "trailARN": t.arn.as_str(),
                "logFileValidationEnabled": validation,
                "isOrganizationTrail": false,
            };
        }
        Op::LookupEvents => {
            b.req = obj! {
                "lookupAttributes": arr![obj! {
                    "attributeKey": "EventName",
                    "attributeValue": rng.choose(&["ConsoleLogin", "RunInstances", "DeleteBucket", "CreateAccessKey"]),
                }],
                "maxResults": 50,
            };
        }

        // ------------------------------------------------------------ Sign-in
        Op::ConsoleLogin => {
            b.region = "us-east-1";
            b.host = Some("signin.aws.amazon.com".to_owned());
            let mfa = cx.who.mfa();
            b.login_failed = rng.permille(70);
            b.resp = obj! { "ConsoleLogin": if b.login_failed { "Failure" } else { "Success" } };
            let login_to = format!(
                "https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_{}_{}",
                cx.region,
                fmt::hex(rng, 16)
            );
            b.extra = Some(if mfa && !matches!(cx.who, Principal::Session(..)) {
                obj! {
                    "LoginTo": login_to,
                    "MobileVersion": "No",
                    "MFAIdentifier": format!("arn:aws:iam::{acct}:mfa/{}", cx.who.short_name()),
                    "MFAUsed": "Yes",
                }
            } else {
                obj! { "LoginTo": login_to, "MobileVersion": "No", "MFAUsed": "No" }
            });
        }

        // ----------------------------------------------------------- DynamoDB
        Op::DescribeTable | Op::CreateTable | Op::UpdateTable | Op::DeleteTable => {
            let t = pick_in(rng, &a.tables, cx.region);
            b = b.on(t);
            let name = t.id.as_str();
            match op {
                Op::DescribeTable => b.req = obj! { "tableName": name },
                Op::CreateTable => {
                    b.req = obj! {
                        "attributeDefinitions": arr![obj! { "attributeName": "pk", "attributeType": "S" }],
                        "tableName": name,
                        "keySchema": arr![obj! { "attributeName": "pk", "keyType": "HASH" }],
                        "billingMode": "PAY_PER_REQUEST",
                    };
                    b.resp = obj! {
                        "tableDescription": obj! {
                            "attributeDefinitions": arr![obj! { "attributeName": "pk", "attributeType": "S" }],
                            "tableName": name,
                            "keySchema": arr![obj! { "attributeName": "pk", "keyType": "HASH" }],
                            "tableStatus": "CREATING",
                            "creationDateTime": fmt::us_datetime(now),
                            "provisionedThroughput": obj! { "numberOfDecreasesToday": 0, "readCapacityUnits": 0, "writeCapacityUnits": 0 },
                            "tableSizeBytes": 0,
                            "itemCount": 0,
                            "tableArn": t.arn.as_str(),
                            "tableId": fmt::uuid4(rng),
                            "billingModeSummary": obj! { "billingMode": "PAY_PER_REQUEST" },
                            "deletionProtectionEnabled": false,
                        },
                    };
                }
                _ => {
                    let status = if op == Op::UpdateTable {
                        "UPDATING"
                    } else {
                        "DELETING"
                    };
                    b.req = if op == Op::UpdateTable {
                        obj! { "tableName": name, "billingMode": "PAY_PER_REQUEST" }
                    } else {
                        obj! { "tableName": name }
                    };
                    b.resp = obj! {
                        "tableDescription": obj! {
                            "tableName": name,
                            "tableStatus": status,
                            "tableSizeBytes": rng.range(0, 50_000_000),
                            "itemCount": rng.range(0, 200_000),
                            "tableArn": t.arn.as_str(),
                            "billingModeSummary": obj! { "billingMode": "PAY_PER_REQUEST" },
                        },
                    };
                }
            }
            b.resources = Some(arr![resource(a, "AWS::DynamoDB::Table", &t.arn)]);
        }
        Op::ListTables => {
            b.req = if rng.permille(500) {
                obj! { "limit": 100 }
            } else {
                J::Null
            };
        }

        // ---------------------------------------------------------- SNS / SQS
        Op::ListTopics | Op::ListQueues => {}
        Op::GetTopicAttributes | Op::CreateTopic | Op::Subscribe => {
            let t = pick_in(rng, &a.topics, cx.region);
            b = b.on(t);
            match op {
                Op::GetTopicAttributes => b.req = obj! { "topicArn": t.arn.as_str() },
                Op::CreateTopic => {
                    b.req = obj! { "name": t.id.as_str() };
                    b.resp = obj! { "topicArn": t.arn.as_str() };
                }
                _ => {
                    let q = pick_in(rng, &a.queues, t.region);
                    b.req = obj! {
                        "topicArn": t.arn.as_str(),
                        "protocol": "sqs",
                        "endpoint": q.arn.as_str(),
                        "returnSubscriptionArn": true,
                    };
                    b.resp = obj! { "subscriptionArn": format!("{}:{}", t.arn, fmt::uuid4(rng)) };
                }
            }
        }
        Op::GetQueueAttributes | Op::CreateQueue | Op::SetQueueAttributes | Op::DeleteQueue => {
            let q = pick_in(rng, &a.queues, cx.region);
            b = b.on(q);
            let url = q.extra.as_str();
            match op {
                Op::GetQueueAttributes => {
                    b.req = obj! { "queueUrl": url, "attributeNames": arr!["All"] };
                }
                Op::CreateQueue => {
                    b.req = obj! {
                        "queueName": q.id.as_str(),
                        "attributes": obj! { "VisibilityTimeout": "30", "MessageRetentionPeriod": "345600" },
                    };
                    b.resp = obj! { "queueUrl": url };
                }
                Op::SetQueueAttributes => {
                    let dlq = pick_in(rng, &a.queues, q.region);
                    b.req = obj! {
                        "queueUrl": url,
                        "attributes": obj! {
                            "RedrivePolicy": format!("{{\"deadLetterTargetArn\":\"{}\",\"maxReceiveCount\":5}}", dlq.arn),
                        },
                    };
                }
                _ => b.req = obj! { "queueUrl": url },
            }
        }

        // --------------------------------------------------------------- Logs
        Op::DescribeLogGroups => {
            b.req = if rng.permille(500) {
                obj! { "logGroupNamePrefix": "/aws/lambda/", "limit": 50 }
            } else {
                obj! { "limit": 50 }
            };
        }
        Op::DescribeLogStreams => {
            b.req = obj! { "logGroupName": log_group(rng, a), "orderBy": "LastEventTime", "descending": true, "limit": 50 };
        }
        Op::CreateLogStream => {
            let f = pick_in(rng, &a.functions, cx.region);
            b.region = f.region;
            b.req = obj! {
                "logGroupName": format!("/aws/lambda/{}", f.id),
                "logStreamName": format!("{}/[$LATEST]{}", fmt::ymd_slash(now), fmt::hex(rng, 32)),
            };
        }
        Op::CreateLogGroup | Op::DeleteLogGroup => {
            b.req = obj! { "logGroupName": log_group(rng, a) };
        }
        Op::PutRetentionPolicy => {
            b.req = obj! { "logGroupName": log_group(rng, a), "retentionInDays": rng.choose(&[7i64, 30, 90, 365]) };
        }

        // --------------------------------------------------------- CloudWatch
        Op::DescribeAlarms => {
            if rng.permille(500) {
                let al = pick_in(rng, &a.alarms, cx.region);
                b = b.on(al);
                b.req = obj! { "alarmNames": arr![al.id.as_str()] };
            } else {
                b.req = obj! { "stateValue": "ALARM", "maxRecords": 100 };
            }
        }
        Op::GetMetricData => {
            let i = pick_in(rng, &a.instances, cx.region);
            b.region = i.region;
            b.req = obj! {
                "metricDataQueries": arr![obj! {
                    "id": "m1",
                    "metricStat": obj! {
                        "metric": obj! {
                            "namespace": "AWS/EC2",
                            "metricName": "CPUUtilization",
                            "dimensions": arr![obj! { "name": "InstanceId", "value": i.id.as_str() }],
                        },
                        "period": 300,
                        "stat": "Average",
                    },
                    "returnData": true,
                }],
                "startTime": fmt::us_datetime(now - 3 * 3600),
                "endTime": fmt::us_datetime(now),
            };
        }
        Op::ListMetrics => {
            b.req =
                obj! { "namespace": rng.choose(&["AWS/Lambda", "AWS/EC2", "AWS/RDS", "AWS/SQS"]) };
        }
        Op::PutMetricAlarm | Op::DeleteAlarms => {
            let al = pick_in(rng, &a.alarms, cx.region);
            b = b.on(al);
            if op == Op::DeleteAlarms {
                b.req = obj! { "alarmNames": arr![al.id.as_str()] };
            } else {
                let t = pick_in(rng, &a.topics, al.region);
                b.req = obj! {
                    "alarmName": al.id.as_str(),
                    "alarmActions": arr![t.arn.as_str()],
                    "metricName": "HTTPCode_Target_5XX_Count",
                    "namespace": "AWS/ApplicationELB",
                    "statistic": "Sum",
                    "period": 60,
                    "evaluationPeriods": 5,
                    "threshold": 10,
                    "comparisonOperator": "GreaterThanThreshold",
                    "treatMissingData": "notBreaching",
                };
            }
        }

        // ------------------------------------------------------------- Config
        Op::DescribeConfigurationRecorders => {}
        Op::DescribeConfigRules | Op::DescribeComplianceByConfigRule => {
            let rule = rng.choose(CONFIG_RULES);
            b.req = if op == Op::DescribeConfigRules {
                obj! { "configRuleNames": arr![rule] }
            } else {
                obj! { "configRuleNames": arr![rule], "complianceTypes": arr!["NON_COMPLIANT"] }
            };
        }
        Op::PutEvaluations => {
            let i = pick_in(rng, &a.instances, cx.region);
            b.region = i.region;
            b.req = obj! {
                "evaluations": arr![obj! {
                    "complianceResourceType": "AWS::EC2::Instance",
                    "complianceResourceId": i.id.as_str(),
                    "complianceType": if rng.permille(800) { "COMPLIANT" } else { "NON_COMPLIANT" },
                    "orderingTimestamp": fmt::us_datetime(now - 60),
                }],
                "resultToken": fmt::b64(rng, 180),
                "testMode": false,
            };
            b.resp = obj! { "failedEvaluations": arr![] };
        }
        Op::StopConfigurationRecorder => {
            b.req = obj! { "configurationRecorderName": "default" };
        }
        Op::DeleteDeliveryChannel => {
            b.req = obj! { "deliveryChannelName": "default" };
        }

        // ------------------------------------------------------ Organizations
        Op::DescribeOrganization | Op::LeaveOrganization => {
            b.region = "us-east-1";
        }
        Op::ListAccounts => {
            b.region = "us-east-1";
            b.req = if rng.permille(500) {
                obj! { "maxResults": 20 }
            } else {
                J::Null
            };
        }
        Op::ListPoliciesForTarget => {
            b.region = "us-east-1";
            b.req = obj! { "targetId": rng.pick(&cx.world.account_ids).as_str(), "filter": "SERVICE_CONTROL_POLICY" };
        }

        // ---------------------------------------------------------------- SSM
        Op::GetParameter | Op::PutParameter => {
            let p = pick_in(rng, &a.parameters, cx.region);
            b = b.on(p);
            if op == Op::GetParameter {
                b.req = obj! { "name": p.id.as_str(), "withDecryption": rng.permille(500) };
            } else {
                b.req = obj! { "name": p.id.as_str(), "type": "SecureString", "overwrite": true, "value": "HIDDEN_DUE_TO_SECURITY_REASONS" };
                b.resp = obj! { "version": rng.range(2, 40), "tier": "Standard" };
            }
        }
        Op::GetParameters => {
            let p1 = pick_in(rng, &a.parameters, cx.region);
            let p2 = pick_in(rng, &a.parameters, p1.region);
            b = b.on(p1);
            b.req = obj! { "names": arr![p1.id.as_str(), p2.id.as_str()], "withDecryption": true };
        }
        Op::DescribeInstanceInformation => {
            let i = pick_in(rng, &a.instances, cx.region);
            b.region = i.region;
            b.req = obj! { "maxResults": 50, "filters": arr![obj! { "key": "InstanceIds", "values": arr![i.id.as_str()] }] };
        }
        Op::UpdateInstanceInformation => {
            let i = pick_in(rng, &a.instances, cx.region);
            b = b.on(i);
            let ip = private_ip(rng);
            b.req = obj! {
                "instanceId": i.id.as_str(),
                "agentVersion": "3.3.1142.0",
                "agentStatus": "Active",
                "platformType": "Linux",
                "platformName": "Amazon Linux",
                "platformVersion": "2023",
                "iPAddress": ip.clone(),
                "computerName": format!("ip-{}.{}.compute.internal", ip.replace('.', "-"), i.region),
                "agentName": "amazon-ssm-agent",
                "availabilityZone": format!("{}a", i.region),
                "sSMConnectionChannel": "ssmmessages",
            };
        }
        Op::SendCommand => {
            let i = pick_in(rng, &a.instances, cx.region);
            b = b.on(i);
            let id = fmt::uuid4(rng);
            b.req = obj! {
                "instanceIds": arr![i.id.as_str()],
                "documentName": "AWS-RunShellScript",
                "parameters": "HIDDEN_DUE_TO_SECURITY_REASONS",
                "interactive": false,
            };
            b.resp = obj! {
                "command": obj! {
                    "commandId": id,
                    "documentName": "AWS-RunShellScript",
                    "documentVersion": "$DEFAULT",
                    "comment": "",
                    "expiresAfter": fmt::us_datetime(now + 7200),
                    "parameters": "HIDDEN_DUE_TO_SECURITY_REASONS",
                    "instanceIds": arr![i.id.as_str()],
                    "targets": arr![],
                    "requestedDateTime": fmt::us_datetime(now),
                    "status": "Pending",
                    "statusDetails": "Pending",
                    "maxConcurrency": "50",
                    "maxErrors": "0",
                    "targetCount": 1,
                    "completedCount": 0,
                    "errorCount": 0,
                    "deliveryTimedOutCount": 0,
                    "timeoutSeconds": 3600,
                    "interactive": false,
                },
            };
        }
        Op::StartSession => {
            let i = pick_in(rng, &a.instances, cx.region);
            b = b.on(i);
            let sid = format!("{}-{}", cx.who.short_name(), fmt::hex(rng, 17));
            b.req = obj! { "target": i.id.as_str() };
            b.resp = obj! {
                "sessionId": sid.clone(),
                "tokenValue": "Value hidden due to security reasons.",
                "streamUrl": format!("wss://ssmmessages.{}.amazonaws.com/v1/data-channel/{sid}?role=publish_subscribe&cell-number={}", i.region, fmt::b64url(rng, 40)),
            };
        }

        // ----------------------------------------------------- SecretsManager
        Op::GetSecretValue
        | Op::DescribeSecret
        | Op::PutSecretValue
        | Op::CreateSecret
        | Op::DeleteSecret => {
            let s = pick_in(rng, &a.secrets, cx.region);
            b = b.on(s);
            let id: J<'a> = if rng.permille(500) {
                J::Str(&s.arn)
            } else {
                J::Str(&s.id)
            };
            match op {
                Op::GetSecretValue | Op::DescribeSecret => b.req = obj! { "secretId": id },
                Op::PutSecretValue => {
                    let v = fmt::uuid4(rng);
                    b.req = obj! { "secretId": id, "clientRequestToken": v.clone() };
                    b.resp = obj! { "arn": s.arn.as_str(), "name": s.id.as_str(), "versionId": v, "versionStages": arr!["AWSCURRENT"] };
                }
                Op::CreateSecret => {
                    let v = fmt::uuid4(rng);
                    let k = pick_in(rng, &a.kms_keys, s.region);
                    b.req = obj! { "name": s.id.as_str(), "clientRequestToken": v.clone(), "description": "", "kmsKeyId": k.extra.as_str() };
                    b.resp = obj! { "arn": s.arn.as_str(), "name": s.id.as_str(), "versionId": v };
                }
                _ => {
                    b.req = obj! { "secretId": id, "recoveryWindowInDays": 30 };
                    b.resp = obj! { "arn": s.arn.as_str(), "name": s.id.as_str(), "deletionDate": fmt::us_datetime(now + 30 * 86_400) };
                }
            }
        }

        // ---------------------------------------------------------------- ECR
        Op::GetAuthorizationToken => {}
        Op::BatchGetImage | Op::DescribeRepositories | Op::PutImage => {
            let r = pick_in(rng, &a.repos, cx.region);
            b = b.on(r);
            match op {
                Op::BatchGetImage => {
                    b.req = obj! {
                        "imageIds": arr![obj! { "imageTag": "latest" }],
                        "acceptedMediaTypes": arr![
                            "application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.manifest.v1+json",
                        ],
                        "repositoryName": r.id.as_str(),
                        "registryId": acct,
                    };
                }
                Op::DescribeRepositories => b.req = obj! { "repositoryNames": arr![r.id.as_str()] },
                _ => {
                    let tag = format!("v1.{}.{}", rng.below(40), rng.below(20));
                    b.req = obj! { "repositoryName": r.id.as_str(), "imageTag": tag.clone(), "registryId": acct };
                    b.resp = obj! {
                        "image": obj! {
                            "registryId": acct,
                            "repositoryName": r.id.as_str(),
                            "imageId": obj! { "imageDigest": format!("sha256:{}", fmt::hex(rng, 64)), "imageTag": tag },
                            "imageManifestMediaType": "application/vnd.docker.distribution.manifest.v2+json",
                        },
                    };
                }
            }
            b.resources = Some(arr![resource(a, "AWS::ECR::Repository", &r.arn)]);
        }

        // ---------------------------------------------------------------- ELB
        Op::DescribeLoadBalancers => {
            if rng.permille(500) {
                let lb = pick_in(rng, &a.load_balancers, cx.region);
                b = b.on(lb);
                b.req = obj! { "names": arr![lb.id.as_str()] };
            } else {
                b.req = obj! { "pageSize": 400 };
            }
        }
        Op::DescribeTargetHealth | Op::RegisterTargets => {
            let tg = pick_in(rng, &a.target_groups, cx.region);
            b = b.on(tg);
            if op == Op::DescribeTargetHealth {
                b.req = obj! { "targetGroupArn": tg.arn.as_str() };
            } else {
                let i = pick_in(rng, &a.instances, tg.region);
                b.req = obj! { "targetGroupArn": tg.arn.as_str(), "targets": arr![obj! { "id": i.id.as_str(), "port": 8080 }] };
            }
        }
    }
    b
}
