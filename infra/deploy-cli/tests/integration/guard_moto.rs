//! The guard end to end: the deploy library against moto behind a small proxy that makes
//! moto's DescribeChangeSet answers AWS-shaped. moto computes no `Replacement` or
//! `PolicyAction`; the proxy adds, to every change set it describes, the change AWS would
//! report if the table's key schema had changed (`Modify`, `Replacement: True`,
//! `PolicyAction: ReplaceAndRetain`), and records every CloudFormation action it relays.
//! Refused: `ExecuteChangeSet` is never called and the stack is unchanged. With
//! `--allow-replace MetricsTable`: executed, with the table left out of the stack policy for that
//! update only.
//!
//! Termination protection the same way: moto answers `UpdateTerminationProtection` with a 500
//! and deletes protected stacks, so the proxy keeps the flag as CloudFormation does, shows it in
//! DescribeStacks and refuses DeleteStack while it is on.

use test_support as support;

use std::sync::{Arc, Mutex};

use cfn::constructs::dynamodb::Table;
use deploy::cloudformation::Progress;
use deploy::deployer::{DeployOptions, DeployOutcome, DestroyOutcome};
use deploy::error::DeployError;
use deploy::guard::{Action, PolicyAction};
use support::{proxy, text};
use tokio::net::TcpListener;

use crate::library::{self, App, BUCKET, STACK};

/// What AWS answers for a table whose key schema changed, as one `Changes` member.
const TABLE_REPLACED: &str = "<member><Type>Resource</Type><ResourceChange>\
<Action>Modify</Action><LogicalResourceId>MetricsTable</LogicalResourceId>\
<PhysicalResourceId>serverlesspresso-metrics-table</PhysicalResourceId>\
<ResourceType>AWS::DynamoDB::Table</ResourceType><Replacement>True</Replacement>\
<PolicyAction>ReplaceAndRetain</PolicyAction><Scope><member>Properties</member></Scope>\
<Details><member><Target><Attribute>Properties</Attribute><Name>KeySchema</Name>\
<RequiresRecreation>Always</RequiresRecreation></Target><Evaluation>Static</Evaluation>\
<ChangeSource>DirectModification</ChangeSource></member></Details></ResourceChange></member>";

/// The form field `name` of a query-protocol request body.
fn field(body: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(body).split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| urlencoding::decode(&v.replace('+', " ")).map(|v| v.into_owned()).unwrap_or_default())
    })
}

/// Adds [`TABLE_REPLACED`] to a DescribeChangeSet answer.
fn with_table_replaced(xml: &str) -> String {
    if let Some(i) = xml.find("</Changes>") {
        format!("{}{TABLE_REPLACED}{}", &xml[..i], &xml[i..])
    } else if xml.contains("<Changes/>") {
        xml.replacen("<Changes/>", &format!("<Changes>{TABLE_REPLACED}</Changes>"), 1)
    } else {
        let i = xml.find("</DescribeChangeSetResult>").expect("a DescribeChangeSet answer");
        format!("{}<Changes>{TABLE_REPLACED}</Changes>{}", &xml[..i], &xml[i..])
    }
}

/// Shows each described stack's termination protection as the stand-in keeps it (moto's own
/// field is dropped: it never changes after CreateStack).
fn with_protection(xml: &str, flags: &std::collections::BTreeMap<String, bool>) -> String {
    const OPEN: &str = "<EnableTerminationProtection>";
    const CLOSE: &str = "</EnableTerminationProtection>";
    let mut xml = xml.to_owned();
    while let Some(i) = xml.find(OPEN) {
        let end = xml[i..].find(CLOSE).map_or(xml.len(), |e| i + e + CLOSE.len());
        xml.replace_range(i..end, "");
    }
    for (stack, on) in flags {
        let name = format!("<StackName>{stack}</StackName>");
        xml = xml.replace(&name, &format!("{name}{OPEN}{on}{CLOSE}"));
    }
    xml
}

/// The CloudFormation requests relayed, in order: `(Action, form body)`.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// What AWS says when a description with property values left a resource's change out.
const INCOMPLETE: &str = "[WARN] --include-property-values option can return incomplete ChangeSet data because: Logical Id: MetricsTable, failed property validation";

/// Marks a complete DescribeChangeSet answer as AWS marks an incomplete one.
fn with_incomplete_warning(xml: &str) -> String {
    let xml = match (xml.find("<StatusReason>"), xml.find("</StatusReason>")) {
        (Some(a), Some(b)) => format!("{}{}", &xml[..a], &xml[b + "</StatusReason>".len()..]),
        _ => xml.to_owned(),
    };
    xml.replacen(
        "<Status>CREATE_COMPLETE</Status>",
        &format!("<Status>CREATE_COMPLETE</Status><StatusReason>{INCOMPLETE}</StatusReason>"),
        1,
    )
}

/// What the stand-in adds to moto.
#[derive(Default)]
struct Stand {
    seen: Seen,
    /// Whether DescribeChangeSet answers get the table replacement.
    replace_table: bool,
    /// Whether, described with property values, the table's change is left out with AWS's
    /// incomplete-description warning (and shown only without values).
    incomplete: bool,
    /// Whether ExecuteChangeSet is held unanswered (an update that takes its time).
    hold_execute: bool,
    /// Termination protection, by stack name.
    protected: Mutex<std::collections::BTreeMap<String, bool>>,
    /// Whether ExecuteChangeSet is answered at once and carried out seconds later, as AWS
    /// starts an update asynchronously (DescribeStacks meanwhile shows the status from before).
    delay_execute: bool,
    /// A tag the stack's owner put on it (`team=coffee`), shown in DescribeStacks answers.
    owner_tag: bool,
    /// Page size for DescribeStackEvents and ListStackResources (AWS pages both), and the cut
    /// DescribeStackResources makes (AWS returns the first 100 resources only), scaled down.
    page: Option<usize>,
    /// moto's DynamoDB, for `ImportExistingResources` (which moto ignores, failing to create a
    /// table that exists): the stand-in adopts the table as CloudFormation does.
    ddb: Option<aws_sdk_dynamodb::Client>,
    /// Tables a change set imports, by stack: logical ID, table name, and the items it held.
    imports: Mutex<std::collections::BTreeMap<String, Vec<Import>>>,
}

type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

/// A table a change set imports: logical ID, table name, the items it held.
type Import = (String, String, Vec<Item>);

/// `ImportExistingResources` as CloudFormation documents it, for tables: each table of the
/// template whose name exists is imported (shown as `Import`, adopted with its items, never
/// recreated); an imported resource must carry a `DeletionPolicy`. moto creates resources
/// only, so on execute the stand-in deletes the table, lets moto create it, and puts its items
/// back. `Err` is the ValidationError AWS answers.
async fn plan_imports(ddb: &aws_sdk_dynamodb::Client, body: &[u8]) -> Result<Vec<Import>, String> {
    let template: serde_json::Value =
        serde_json::from_str(&field(body, "TemplateBody").ok_or("TemplateBody expected")?)
            .map_err(|e| e.to_string())?;
    let mut imports = Vec::new();
    for (id, r) in template["Resources"].as_object().into_iter().flatten() {
        let Some(name) = r["Properties"]["TableName"].as_str().filter(|_| r["Type"] == "AWS::DynamoDB::Table") else {
            continue;
        };
        if ddb.describe_table().table_name(name).send().await.is_err() {
            continue;
        }
        if r.get("DeletionPolicy").is_none() {
            return Err(format!("Resource {id} to import must have a DeletionPolicy"));
        }
        let items = ddb.scan().table_name(name).send().await.map_err(|e| format!("{e:?}"))?.items().to_vec();
        imports.push((id.clone(), name.to_owned(), items));
    }
    Ok(imports)
}

/// Shows each imported resource's change as `Import` (moto lists it as `Add`).
fn with_imports(xml: &str, ids: &[String]) -> String {
    xml.split_inclusive("</member>")
        .map(|m| {
            if ids.iter().any(|id| m.contains(&format!("<LogicalResourceId>{id}</LogicalResourceId>"))) {
                m.replace("<Action>Add</Action>", "<Action>Import</Action>")
            } else {
                m.to_owned()
            }
        })
        .collect()
}

/// The members of the list `tag` in `xml` from `start`, `size` of them, with a `NextToken`
/// when more follow (`paged: false`: cut, without one).
fn page_of(xml: &str, tag: &str, start: usize, size: usize, paged: bool) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let (Some(a), Some(b)) = (xml.find(&open), xml.find(&close)) else { return xml.to_owned() };
    let inner = &xml[a + open.len()..b];
    let members: Vec<String> =
        inner.split_inclusive("</member>").filter(|m| m.contains("<member>")).map(str::to_owned).collect();
    let end = (start + size).min(members.len());
    let token = if paged && end < members.len() { format!("<NextToken>{end}</NextToken>") } else { String::new() };
    format!("{}{open}{}{close}{token}{}", &xml[..a], members[start.min(end)..end].concat(), &xml[b + close.len()..])
}

/// How long a delayed ExecuteChangeSet waits before it reaches moto.
const EXECUTE_DELAY: std::time::Duration = std::time::Duration::from_secs(6);

/// Adds the owner's tag to every stack a DescribeStacks answer lists.
fn with_owner_tag(xml: &str) -> String {
    xml.replace("<Tags>", "<Tags><member><Key>team</Key><Value>coffee</Value></member>")
}

const XMLNS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";

/// Answers what moto lacks, as CloudFormation documents it; `None` relays the request.
fn stand_in(stand: &Stand, action: &str, body: &[u8]) -> Option<(&'static str, String)> {
    let stack = field(body, "StackName").unwrap_or_default();
    match action {
        "UpdateTerminationProtection" => {
            let on = field(body, "EnableTerminationProtection").as_deref() == Some("true");
            stand.protected.lock().unwrap().insert(stack.clone(), on);
            Some(("HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\n", format!(
                "<UpdateTerminationProtectionResponse xmlns=\"{XMLNS}\"><UpdateTerminationProtectionResult><StackId>arn:aws:cloudformation:us-east-1:123456789012:stack/{stack}/1</StackId></UpdateTerminationProtectionResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></UpdateTerminationProtectionResponse>"
            )))
        }
        "DeleteStack" if stand.protected.lock().unwrap().get(&stack) == Some(&true) => {
            Some(("HTTP/1.1 400 Bad Request\r\ncontent-type: text/xml\r\n", format!(
                "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack [{stack}] cannot be deleted while TerminationProtection is enabled</Message></Error><RequestId>1</RequestId></ErrorResponse>"
            )))
        }
        _ => None,
    }
}

/// Relays to moto; answers what moto lacks; rewrites DescribeChangeSet and DescribeStacks
/// answers; records `(Action, body)` of each request.
async fn serve(listener: TcpListener, moto: String, stand: Arc<Stand>) {
    let upstream = moto.trim_start_matches("http://").to_owned();
    loop {
        let Ok((mut conn, _)) = listener.accept().await else { return };
        let (upstream, stand) = (upstream.clone(), stand.clone());
        tokio::spawn(async move {
            let Some((head, body)) = proxy::read_request(&mut conn).await else { return };
            let action = field(&body, "Action").unwrap_or_default();
            stand.seen.lock().unwrap().push((action.clone(), body.clone()));
            if action == "ExecuteChangeSet" && stand.hold_execute {
                tokio::time::sleep(std::time::Duration::from_secs(600)).await;
                return;
            }
            if action == "ExecuteChangeSet" && stand.delay_execute {
                let later = (upstream.clone(), head.clone(), body.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(EXECUTE_DELAY).await;
                    let (upstream, head, body) = later;
                    proxy::relay(&upstream, &head, &body).await.expect("moto executes");
                });
                let answer = format!("<ExecuteChangeSetResponse xmlns=\"{XMLNS}\"><ExecuteChangeSetResult/><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></ExecuteChangeSetResponse>");
                proxy::respond(&mut conn, "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\n", answer.as_bytes()).await;
                return;
            }
            let stack = field(&body, "StackName").unwrap_or_default();
            if let (Some(ddb), "CreateChangeSet", Some("true")) =
                (&stand.ddb, action.as_str(), field(&body, "ImportExistingResources").as_deref())
            {
                match plan_imports(ddb, &body).await {
                    Ok(imports) => {
                        stand.imports.lock().unwrap().insert(stack.clone(), imports);
                    }
                    Err(message) => {
                        let answer = format!("<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>{message}</Message></Error><RequestId>1</RequestId></ErrorResponse>");
                        proxy::respond(
                            &mut conn,
                            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/xml\r\n",
                            answer.as_bytes(),
                        )
                        .await;
                        return;
                    }
                }
            }
            let adopting =
                (action == "ExecuteChangeSet").then(|| stand.imports.lock().unwrap().remove(&stack)).flatten();
            if let (Some(ddb), Some(imports)) = (&stand.ddb, &adopting) {
                for (_, table, _) in imports {
                    let unprotect = ddb.update_table().table_name(table).deletion_protection_enabled(false);
                    unprotect.send().await.expect("the stand-in makes way for moto");
                    ddb.delete_table().table_name(table).send().await.expect("the stand-in makes way for moto");
                }
            }
            if let Some((answer_head, answer)) = stand_in(&stand, &action, &body) {
                proxy::respond(&mut conn, answer_head, answer.as_bytes()).await;
                return;
            }
            let Some((answer_head, answer)) = proxy::relay(&upstream, &head, &body).await else { return };
            if let (Some(ddb), Some(imports)) = (&stand.ddb, adopting) {
                for (_, table, items) in imports {
                    for item in items {
                        ddb.put_item().table_name(&table).set_item(Some(item)).send().await.expect("items put back");
                    }
                }
            }
            assert!(
                !proxy::header(&answer_head, "transfer-encoding").is_some_and(|v| v.contains("chunked")),
                "the proxy rewrites whole bodies only"
            );
            let ok = answer_head.starts_with("HTTP/1.1 200");
            let values = field(&body, "IncludePropertyValues").as_deref() == Some("true");
            let answer = if action == "DescribeChangeSet" && ok && stand.incomplete && values {
                with_incomplete_warning(&String::from_utf8_lossy(&answer)).into_bytes()
            } else if let (true, true, Some(ids)) = (
                action == "DescribeChangeSet",
                ok,
                stand
                    .imports
                    .lock()
                    .unwrap()
                    .get(&stack)
                    .map(|i| i.iter().map(|(id, _, _)| id.clone()).collect::<Vec<_>>()),
            ) {
                with_imports(&String::from_utf8_lossy(&answer), &ids).into_bytes()
            } else if action == "DescribeChangeSet" && ok && (stand.replace_table || stand.incomplete) {
                with_table_replaced(&String::from_utf8_lossy(&answer)).into_bytes()
            } else if let (Some(size), true, true) = (
                stand.page,
                ok,
                matches!(action.as_str(), "DescribeStackEvents" | "ListStackResources" | "DescribeStackResources"),
            ) {
                let start = field(&body, "NextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
                let xml = String::from_utf8_lossy(&answer).into_owned();
                match action.as_str() {
                    "DescribeStackEvents" => page_of(&xml, "StackEvents", start, size, true).into_bytes(),
                    "ListStackResources" => page_of(&xml, "StackResourceSummaries", start, size, true).into_bytes(),
                    "DescribeStackResources" => page_of(&xml, "StackResources", 0, size, false).into_bytes(),
                    _ => answer,
                }
            } else if action == "DescribeStacks" && ok {
                let flags = stand.protected.lock().unwrap().clone();
                let xml = with_protection(&String::from_utf8_lossy(&answer), &flags);
                if stand.owner_tag { with_owner_tag(&xml) } else { xml }.into_bytes()
            } else {
                answer
            };
            proxy::respond(&mut conn, &answer_head, &answer).await;
        });
    }
}

/// The CloudFormation actions relayed so far, in order.
fn actions(seen: &Seen) -> Vec<String> {
    seen.lock().unwrap().iter().map(|(a, _)| a.clone()).collect()
}

/// `stand` in front of `app`'s moto: the proxy's endpoint and its task.
async fn proxy(app: &App, stand: &Arc<Stand>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    (endpoint, tokio::spawn(serve(listener, app.moto.endpoint.clone(), stand.clone())))
}

/// `app`'s options with a real change (a new parameter value) for the change set to carry.
fn with_email(app: &App) -> DeployOptions {
    DeployOptions { parameters: vec!["AlarmEmail=ops@example.com".to_owned()], ..app.options() }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replacement_the_change_set_reports_is_refused_unless_named() {
    let app = App::start().await.deployed().await;
    let cfn = aws_sdk_cloudformation::Client::new(&app.moto.sdk_config().await);
    let parameters = || deploy::cloudformation::deployed_parameters(&cfn, STACK);
    let before = parameters().await.unwrap();

    let stand = Arc::new(Stand { replace_table: true, ..Default::default() });
    let seen = stand.seen.clone();
    let (endpoint, server) = proxy(&app, &stand).await;
    let d = library::deployer_at(&endpoint).await;

    // A real change, and the table replacement the proxy reports.
    let change = with_email(&app);
    let (outcome, _) = library::deploy(&d, &app.target, &change).await;
    let outcome = outcome.unwrap();
    let DeployOutcome::Refused { refusals, .. } = &outcome else { panic!("refused: {outcome:?}") };
    let table = &refusals[0].change;
    assert_eq!((table.logical_resource_id.as_str(), table.resource_type.as_str()), ("MetricsTable", Table::TYPE));
    assert_eq!(table.policy_action, Some(PolicyAction::ReplaceAndRetain), "{refusals:?}");
    assert!(outcome.to_string().contains("--allow-replace MetricsTable"), "the next command is named: {outcome}");
    // CI reads the same refusal as JSON.
    assert_eq!(serde_json::to_value(&outcome).unwrap()["refusals"][0]["change"]["PolicyAction"], "ReplaceAndRetain");
    let done = actions(&seen);
    assert!(done.contains(&"DescribeChangeSet".to_owned()), "{done:?}");
    assert!(done.contains(&"DeleteChangeSet".to_owned()), "the refused change set is deleted: {done:?}");
    assert!(!done.contains(&"ExecuteChangeSet".to_owned()), "{done:?}");
    assert!(!done.contains(&"SetStackPolicy".to_owned()), "{done:?}");
    assert_eq!(parameters().await.unwrap(), before, "the stack is unchanged");

    // Named: it proceeds, with the table out of the stack policy for that update only.
    seen.lock().unwrap().clear();
    let allowed = DeployOptions { allow_replace: vec!["MetricsTable".to_owned()], ..change };
    let (outcome, events) = library::deploy(&d, &app.target, &allowed).await;
    assert!(matches!(outcome, Ok(DeployOutcome::Deployed { .. })), "{outcome:?}");
    let lifted = Progress::PolicySet { stack: STACK.into(), lifted: vec!["MetricsTable".into()] };
    assert!(events.contains(&lifted), "{events:?}");
    let done = actions(&seen);
    let execute = done.iter().position(|a| a == "ExecuteChangeSet").expect("executed");
    let policies: Vec<(usize, serde_json::Value)> = seen
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, (a, _))| a == "SetStackPolicy")
        .map(|(i, (_, body))| (i, serde_json::from_str(&field(body, "StackPolicyBody").unwrap()).unwrap()))
        .collect();
    assert_eq!(policies.len(), 2, "lifted for the update, then restored: {done:?}");
    let denies = |p: &serde_json::Value| p.to_string().contains("LogicalResourceId/MetricsTable");
    assert!(policies[0].0 < execute && !denies(&policies[0].1), "{:?}", policies[0]);
    assert!(policies[1].0 > execute && denies(&policies[1].1), "{:?}", policies[1]);
    assert_eq!(parameters().await.unwrap()["AlarmEmail"], "ops@example.com");
    server.abort();
}

/// AWS drops a resource's change from a description with property values when its values fail
/// validation, says so only in `StatusReason`, and keeps the change set `CREATE_COMPLETE`: the
/// guard describes it again without values, finds the table's replacement there, and refuses.
#[tokio::test(flavor = "multi_thread")]
async fn an_incomplete_description_never_lets_a_dropped_replacement_through() {
    let app = App::start().await.deployed().await;
    let stand = Arc::new(Stand { incomplete: true, ..Default::default() });
    let seen = stand.seen.clone();
    let (endpoint, server) = proxy(&app, &stand).await;
    let d = library::deployer_at(&endpoint).await;
    let (outcome, events) = library::deploy(&d, &app.target, &with_email(&app)).await;
    let outcome = outcome.unwrap();
    let DeployOutcome::Refused { refusals, .. } = &outcome else { panic!("refused: {outcome:?}") };
    assert!(
        refusals.iter().any(|r| r.change.logical_resource_id == "MetricsTable" && r.why.starts_with("replaced")),
        "{refusals:?}"
    );
    let said = events
        .iter()
        .any(|p| matches!(p, Progress::Warning { message } if message.contains("described again without them")));
    assert!(said, "{events:?}");
    let without_values = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(a, body)| a == "DescribeChangeSet" && field(body, "IncludePropertyValues").as_deref() != Some("true"))
        .count();
    assert!(without_values >= 1, "described again without property values");
    assert!(!actions(&seen).contains(&"ExecuteChangeSet".to_owned()), "{:?}", actions(&seen));
    server.abort();
}

/// The deploy binary, started against `endpoint` and left running.
fn spawn_deploy(endpoint: &str, args: &[&str]) -> std::process::Child {
    support::with_test_credentials(
        std::process::Command::new(env!("CARGO_BIN_EXE_deploy"))
            .args(args)
            .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    )
    .spawn()
    .expect("deploy starts")
}

/// Whether the stack policy on moto denies replacing the table.
async fn table_protected(cfn: &aws_sdk_cloudformation::Client) -> bool {
    let policy = cfn.get_stack_policy().stack_name(STACK).send().await.unwrap();
    policy.stack_policy_body().unwrap_or_default().contains("LogicalResourceId/MetricsTable")
}

/// Waits until the stand-in has seen ExecuteChangeSet (and holds it).
async fn executing(seen: &Seen) {
    for _ in 0..600 {
        if actions(seen).contains(&"ExecuteChangeSet".to_owned()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the update never reached ExecuteChangeSet: {:?}", actions(seen));
}

/// A policy lifted with `--allow-replace` for an update that is then stopped: Ctrl-C restores
/// it before the process exits. Black-box: the signal handling is the binary's.
#[tokio::test(flavor = "multi_thread")]
async fn a_lifted_stack_policy_is_restored_when_the_binary_is_interrupted() {
    let app = App::start().await.deployed().await;
    let cfn = aws_sdk_cloudformation::Client::new(&app.moto.sdk_config().await);
    assert!(table_protected(&cfn).await, "every deploy protects the table");
    let stand = Arc::new(Stand { replace_table: true, hold_execute: true, ..Default::default() });
    let (endpoint, server) = proxy(&app, &stand).await;
    let zips = app.zips.path().to_str().unwrap();
    let child = spawn_deploy(
        &endpoint,
        &[
            "--stack",
            "standalone",
            "--asset-bucket",
            BUCKET,
            "--lambda-dir",
            zips,
            "--yes",
            "--parameters",
            "AlarmEmail=ops@example.com",
            "--allow-replace",
            "MetricsTable",
        ],
    );
    executing(&stand.seen).await;
    assert!(!table_protected(&cfn).await, "lifted for the update");
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("stack policy of serverlesspresso-metrics-standalone restored"),
        "{}",
        text(&out.stderr)
    );
    assert!(table_protected(&cfn).await, "restored on Ctrl-C");
    server.abort();
}

/// A run stopped outright while the policy is lifted cannot restore it; the next deploy, even
/// one with nothing to change, finds the policy lifted and restores it.
#[tokio::test(flavor = "multi_thread")]
async fn a_lifted_stack_policy_left_by_a_killed_run_is_restored_by_the_next_deploy() {
    let app = App::start().await.deployed().await;
    let cfn = aws_sdk_cloudformation::Client::new(&app.moto.sdk_config().await);
    let stand = Arc::new(Stand { replace_table: true, hold_execute: true, ..Default::default() });
    let (endpoint, server) = proxy(&app, &stand).await;
    let (d, t) = (library::deployer_at(&endpoint).await, app.target());
    let lifted = DeployOptions { allow_replace: vec!["MetricsTable".to_owned()], ..with_email(&app) };
    let run = tokio::spawn(async move { library::deploy(&d, &t, &lifted).await.0.map(|_| ()) });
    executing(&stand.seen).await;
    assert!(!table_protected(&cfn).await, "lifted for the update");
    run.abort();
    assert!(run.await.is_err_and(|e| e.is_cancelled()), "stopped before it finished");
    assert!(!table_protected(&cfn).await, "a stopped run cannot restore it");
    let (outcome, events) = library::deploy(&app.deployer().await, &app.target, &app.options()).await;
    assert_eq!(outcome.unwrap(), DeployOutcome::UpToDate { stack: STACK.into() });
    assert!(events.contains(&Progress::PolicySet { stack: STACK.into(), lifted: vec![] }), "{events:?}");
    assert!(table_protected(&cfn).await, "the next deploy restores it");
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_deploy_protects_the_stack_and_destroy_needs_unprotect() {
    let app = App::start().await;
    let stand = Arc::new(Stand::default());
    let (endpoint, server) = proxy(&app, &stand).await;
    let d = library::deployer_at(&endpoint).await;
    let (outcome, events) = library::deploy(&d, &app.target, &app.options()).await;
    assert!(matches!(outcome, Ok(DeployOutcome::Deployed { .. })), "{outcome:?}");
    assert!(events.contains(&Progress::Protected { stack: STACK.into() }), "{events:?}");
    assert_eq!(stand.protected.lock().unwrap().get(STACK), Some(&true));

    // Protected: refused before anything is deleted, with the override named.
    stand.seen.lock().unwrap().clear();
    let err = d.destroy_plan(&app.target, false, false).await.unwrap_err();
    assert!(matches!(&err, DeployError::Protected(stack) if stack == STACK), "{err:?}");
    assert!(err.to_string().contains("pass --unprotect"), "{err}");
    assert!(!actions(&stand.seen).contains(&"DeleteStack".to_owned()), "{:?}", actions(&stand.seen));

    // Named: turned off, then deleted; the table stays.
    stand.seen.lock().unwrap().clear();
    let plan = d.destroy_plan(&app.target, false, true).await.unwrap().expect("a plan");
    assert!(plan.unprotect, "{plan:?}");
    let outcome = d.destroy(plan, &mut |_| ()).await.unwrap();
    assert!(matches!(&outcome, DestroyOutcome::Destroyed { kept, .. } if kept.len() == 1), "{outcome:?}");
    let done = actions(&stand.seen);
    let off = done.iter().position(|a| a == "UpdateTerminationProtection").expect("turned off");
    let delete = done.iter().position(|a| a == "DeleteStack").expect("deleted");
    assert!(off < delete, "{done:?}");
    assert_eq!(stand.protected.lock().unwrap().get(STACK), Some(&false));
    let cfn = aws_sdk_cloudformation::Client::new(&app.moto.sdk_config().await);
    let gone = cfn.describe_stacks().stack_name(STACK).send().await;
    assert!(
        gone.is_err()
            || gone.unwrap().stacks()[0].stack_status()
                == Some(&aws_sdk_cloudformation::types::StackStatus::DeleteComplete)
    );
    server.abort();
}

/// A new template that drops `DeletionPolicy: Retain` from the table changes nothing a change set
/// shows (moto lists no change; AWS lists none either: policies are not properties), so the
/// deploy compares the deployed template with the new one and refuses, naming the rule.
#[tokio::test(flavor = "multi_thread")]
async fn dropping_retain_is_refused_online_from_the_deployed_template() {
    let app = App::start().await.deployed().await;
    let d = app.deployer().await;
    let mut t = app.target();
    let table = cfn::template::LogicalId::new("MetricsTable").unwrap();
    t.template.resources.get_mut(&table).unwrap().deletion_policy = Some(cfn::template::Policy::Delete);
    // Something the change set does show, so there is a change set to review.
    let options = with_email(&app);
    let (outcome, _) = library::deploy(&d, &t, &options).await;
    let outcome = outcome.unwrap();
    let DeployOutcome::Refused { refusals, .. } = outcome else { panic!("refused: {outcome}") };
    // (moto lists the table as modified without a Replacement, which is refused as well.)
    assert!(
        refusals.iter().any(|r| r.rule == "retain-dropped" && r.change.logical_resource_id == "MetricsTable"),
        "{refusals:?}"
    );
    // Named, it goes through.
    let allowed = DeployOptions { allow_replace: vec!["MetricsTable".to_owned()], ..options };
    let (outcome, _) = library::deploy(&d, &t, &allowed).await;
    assert!(matches!(outcome, Ok(DeployOutcome::Deployed { .. })), "{outcome:?}");
}

/// Two things AWS does that moto does not: an update starts after ExecuteChangeSet has
/// answered (a status read at once is the one from before), and a change set's tags replace
/// the stack's. The deploy waits for the stack's own event of this update before calling it
/// done, and carries the owner's tags along with its own.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_is_done_only_when_its_own_event_says_so_and_keeps_the_owners_tags() {
    let app = App::start().await;
    let stand = Arc::new(Stand { delay_execute: true, owner_tag: true, ..Default::default() });
    let (endpoint, _server) = proxy(&app, &stand).await;
    let d = library::deployer_at(&endpoint).await;
    let (outcome, _) = library::deploy(&d, &app.target, &app.options()).await;
    assert!(matches!(outcome, Ok(DeployOutcome::Deployed { .. })), "{outcome:?}");

    let (outcome, _) = library::deploy(&d, &app.target, &with_email(&app)).await;
    assert!(matches!(outcome, Ok(DeployOutcome::Deployed { .. })), "{outcome:?}");
    // When the deploy says it is done, the update has happened (the delayed execute landed).
    let cfn = aws_sdk_cloudformation::Client::new(&app.moto.sdk_config().await);
    let stack = cfn.describe_stacks().stack_name(STACK).send().await.unwrap();
    let email = stack.stacks()[0].parameters().iter().find(|p| p.parameter_key() == Some("AlarmEmail")).cloned();
    assert_eq!(email.and_then(|p| p.parameter_value().map(str::to_owned)).as_deref(), Some("ops@example.com"));

    // The update's change set carried the owner's tag and the app's.
    let seen = stand.seen.lock().unwrap().clone();
    let creates: Vec<&Vec<u8>> = seen.iter().filter(|(a, _)| a == "CreateChangeSet").map(|(_, b)| b).collect();
    let update = creates.last().expect("an update's change set");
    let tags: std::collections::BTreeMap<String, String> = (1..=10)
        .filter_map(|i| {
            Some((field(update, &format!("Tags.member.{i}.Key"))?, field(update, &format!("Tags.member.{i}.Value"))?))
        })
        .collect();
    assert_eq!(tags.get("team").map(String::as_str), Some("coffee"), "{tags:?}");
    assert_eq!(tags.get(&app.target.tag.0), Some(&app.target.tag.1));
}

/// Stack events and resources come in pages on AWS (and DescribeStackResources stops at 100);
/// moto answers in one. Through pages of one, a deploy still reports every event,
/// and destroy still names every resource it deletes with its physical ID.
#[tokio::test(flavor = "multi_thread")]
async fn every_page_of_events_and_resources_is_read() {
    let app = App::start().await;
    let stand = Arc::new(Stand { page: Some(1), ..Default::default() });
    let (endpoint, _server) = proxy(&app, &stand).await;
    let d = library::deployer_at(&endpoint).await;
    let (outcome, events) = library::deploy(&d, &app.target, &app.options()).await;
    assert!(matches!(outcome, Ok(DeployOutcome::Deployed { .. })), "{outcome:?}");
    // (moto reports events of the stack itself only.)
    for status in ["CREATE_IN_PROGRESS", "CREATE_COMPLETE"] {
        let reported =
            events.iter().any(|p| matches!(p, Progress::StackEvent(e) if e.logical_id == STACK && e.status == status));
        assert!(reported, "{status} reported: {events:?}");
    }
    let plan = d.destroy_plan(&app.target, false, true).await.unwrap().expect("a plan");
    for id in ["MetricsQueue", "MetricsDeadLetterQueue"] {
        let queue = plan.deletes.iter().find(|r| r.logical_id == id).unwrap_or_else(|| panic!("{id}: {plan:?}"));
        assert!(queue.physical_id.starts_with("http"), "{id} named with its URL: {queue:?}");
        assert!(queue.holds.as_deref().is_some_and(|h| h.contains("waiting")), "{id} with its depth: {queue:?}");
    }
    assert_eq!(plan.keeps, [("MetricsTable".to_owned(), "serverlesspresso-metrics-table".to_owned())]);
    let all =
        deploy::cloudformation::resources(&aws_sdk_cloudformation::Client::new(&app.moto.sdk_config().await), STACK)
            .await
            .unwrap();
    // Every resource moto has is named with its physical ID, past the first page. (moto lists
    // one resource without a logical ID.)
    let all: std::collections::BTreeMap<_, _> = all.into_iter().filter(|(id, _)| !id.is_empty()).collect();
    let named = plan.deletes.iter().filter(|r| all.get(&r.logical_id).is_some_and(|a| a.physical_id == r.physical_id));
    assert_eq!(named.count() + plan.keeps.len(), all.len(), "{plan:?}\n{all:?}");
    assert!(all.len() > 10, "{all:?}");
    let outcome = d.destroy(plan, &mut |_| ()).await.unwrap();
    assert!(matches!(outcome, DestroyOutcome::Destroyed { .. }), "{outcome:?}");
}

/// After `destroy`, the retained table blocks a new stack (AWS fails the CREATE on its name and
/// leaves the stack in ROLLBACK_COMPLETE). The deploy says so before creating anything and
/// names the way forward; `import_existing` adopts the table with its data.
#[tokio::test(flavor = "multi_thread")]
async fn a_redeploy_after_destroy_adopts_the_retained_table_with_its_data() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let app = App::start().await;
    let config = app.moto.sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let stand = Arc::new(Stand { ddb: Some(ddb.clone()), ..Default::default() });
    let (endpoint, _server) = proxy(&app, &stand).await;
    let (d, t, options) = (library::deployer_at(&endpoint).await, &app.target, app.options());
    let (outcome, _) = library::deploy(&d, t, &options).await;
    assert!(matches!(outcome, Ok(DeployOutcome::Deployed { .. })), "{outcome:?}");
    const TABLE: &str = "serverlesspresso-metrics-table";
    let investors = [("PK", "Aggregate"), ("SK", "2026-12-06#total"), ("probe", "counted before destroy")];
    let mut put = ddb.put_item().table_name(TABLE);
    for (k, v) in investors {
        put = put.item(k, AttributeValue::S(v.to_owned()));
    }
    put.send().await.unwrap();
    let plan = d.destroy_plan(t, false, true).await.unwrap().expect("a plan");
    assert!(matches!(d.destroy(plan, &mut |_| ()).await.unwrap(), DestroyOutcome::Destroyed { .. }));

    // The way forward is named, and nothing is left behind (no stack in REVIEW_IN_PROGRESS).
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let in_the_way = |e: &DeployError| {
        matches!(e, DeployError::RetainedExists { logical_id, name, .. } if logical_id == "MetricsTable" && name == TABLE)
            && e.to_string().contains("--import-existing")
    };
    let (deployed, _) = library::deploy(&d, t, &options).await;
    assert!(deployed.as_ref().is_err_and(in_the_way), "{deployed:?}");
    let previewed = d.diff(t, &options, &mut |_| ()).await;
    assert!(previewed.as_ref().is_err_and(in_the_way), "{previewed:?}");
    assert!(cfn.describe_stacks().stack_name(STACK).send().await.is_err(), "no stack was created");

    let adopt = DeployOptions { import_existing: true, ..options.clone() };
    let (outcome, events) = library::deploy(&d, t, &adopt).await;
    assert!(matches!(outcome, Ok(DeployOutcome::Deployed { .. })), "{outcome:?}");
    let imported = library::reviews(&events).iter().any(|p| {
        p.review.changes.iter().any(|c| c.logical_resource_id == "MetricsTable" && c.action == Action::Import)
    });
    assert!(imported, "{events:?}");
    let kept = ddb
        .get_item()
        .table_name(TABLE)
        .key("PK", AttributeValue::S("Aggregate".into()))
        .key("SK", AttributeValue::S("2026-12-06#total".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.item().and_then(|i| i["probe"].as_s().ok()).map(String::as_str), Some("counted before destroy"));
    let sent = stand
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(a, b)| a == "CreateChangeSet" && field(b, "ImportExistingResources").as_deref() == Some("true"))
        .count();
    assert_eq!(sent, 1);
    // The stack is whole again: the next deploy has nothing to do.
    let (again, _) = library::deploy(&d, t, &options).await;
    assert_eq!(again.unwrap(), DeployOutcome::UpToDate { stack: STACK.into() });
}
