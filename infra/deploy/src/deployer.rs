//! Deploy as a library that returns data (in the spirit of cloudformatious): a [`Deployer`] owns
//! the clients; each command returns a typed outcome or a [`DeployError`], reports progress
//! through a callback, and prints nothing. Approval is asked through a callback too, so the
//! binary decides how (a terminal, `--yes`) and the library decides when.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use aws_sdk_cloudformation::Client as Cfn;
use aws_sdk_s3::Client as S3;
use serde::Serialize;

use cfn::constructs::dynamodb::Table;
use cfn::constructs::lambda::Function;

use crate::cloudformation::{self as cf, PlannedChange, Progress, Report, StackFailure};
use crate::error::DeployError;
use crate::guard::{self, Refusal, Review};
use crate::status::{Blocker, StackState};

type Result<T, E = DeployError> = std::result::Result<T, E>;

/// The stack to act on, as the app describes it: its name and template, the zips its functions
/// need, the tag that marks it as the app's, and the retained tables a new stack would create
/// under a fixed name.
pub struct Target {
    pub name: String,
    pub template: cfn::template::Template,
    pub assets: Vec<crate::assets::Asset>,
    /// Set on the stack by every deploy; `destroy` requires it (unless forced).
    pub tag: (String, String),
    /// `(logical ID, table name)` of the tables a new stack creates under a fixed name.
    pub tables: Vec<(String, String)>,
}

impl Target {
    /// The stack `name` made of `template`, with the assets of `functions` and the fixed names
    /// of `tables`.
    pub fn new(
        name: impl Into<String>,
        template: cfn::template::Template,
        functions: &[&Function],
        tables: &[&Table],
        tag: (&str, &str),
    ) -> Self {
        Target {
            name: name.into(),
            template,
            assets: crate::assets::assets_of(functions.iter().copied()),
            tag: (tag.0.to_owned(), tag.1.to_owned()),
            tables: tables
                .iter()
                .filter_map(|t| Some((t.construct().id.to_string(), t.physical_name()?.to_owned())))
                .collect(),
        }
    }

    fn template_json(&self) -> Result<String> {
        Ok(self.template.to_json()?)
    }
}

/// When a deploy asks before executing (the CDK CLI's `--require-approval`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RequireApproval {
    /// Never ask.
    Never,
    /// Ask for every change.
    AnyChange,
    /// Ask when permissions change (IAM roles and policies, resource policies) or data may be
    /// lost (a change let through with --allow-replace).
    #[default]
    Broadening,
    /// Ask only when data may be lost (a change let through with --allow-replace).
    Destructive,
}

impl RequireApproval {
    /// Every level with its name and what it means, for a CLI's choices.
    pub const LEVELS: [(RequireApproval, &'static str, &'static str); 4] = [
        (RequireApproval::Never, "never", "Never ask"),
        (RequireApproval::AnyChange, "any-change", "Ask for every change"),
        (
            RequireApproval::Broadening,
            "broadening",
            "Ask when permissions change (IAM roles and policies, resource policies) or data may be lost (a change let through with --allow-replace)",
        ),
        (
            RequireApproval::Destructive,
            "destructive",
            "Ask only when data may be lost (a change let through with --allow-replace)",
        ),
    ];

    /// The level named `name` (as [`LEVELS`](Self::LEVELS) names them).
    pub fn named(name: &str) -> Option<Self> {
        Self::LEVELS.iter().find(|(_, n, _)| *n == name).map(|(level, _, _)| *level)
    }

    /// Whether `review` needs the user's yes, given the resources let through by name.
    pub fn needs_approval(self, review: &Review, allowed: &[String]) -> bool {
        let destructive = review.refused.iter().any(|r| allowed.contains(&r.change.logical_resource_id));
        match self {
            RequireApproval::Never => false,
            RequireApproval::AnyChange => true,
            RequireApproval::Broadening => destructive || !review.iam.is_empty(),
            RequireApproval::Destructive => destructive,
        }
    }
}

/// What `deploy` and `diff` take besides the target.
#[derive(Clone, Debug, Default)]
pub struct DeployOptions {
    pub asset_bucket: Option<String>,
    /// Extra template parameters, `KEY=VALUE`.
    pub parameters: Vec<String>,
    /// Approve without asking.
    pub yes: bool,
    pub require_approval: RequireApproval,
    /// Logical IDs whose data loss the user accepts (`--allow-replace ID`, repeatable).
    pub allow_replace: Vec<String>,
    pub lambda_dir: Option<PathBuf>,
    /// Adopt resources that exist under the template's names, data included (the table kept
    /// by an earlier `destroy`), instead of failing to create them.
    pub import_existing: bool,
}

/// The answer to "execute this change set?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approval {
    Yes,
    No,
    /// Nobody can be asked (no terminal); the reason says how to approve.
    Unavailable(String),
}

/// What the guard and the approval level make of a planned change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Execute without asking.
    Go,
    /// Execute once approved.
    NeedsApproval,
    /// Data would be lost on resources the user did not name.
    Refused(Vec<Refusal>),
}

impl Verdict {
    pub fn of(review: &Review, options: &DeployOptions) -> Verdict {
        let refused: Vec<Refusal> = review.refusals_except(&options.allow_replace).cloned().collect();
        if !refused.is_empty() {
            Verdict::Refused(refused)
        } else if !options.yes && options.require_approval.needs_approval(review, &options.allow_replace) {
            Verdict::NeedsApproval
        } else {
            Verdict::Go
        }
    }
}

/// Whether there is anything to deploy.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "plan", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Plan {
    UpToDate { stack: String },
    Change(PlannedChange),
}

/// What `diff` finds.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "plan", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Preview {
    UpToDate {
        stack: String,
    },
    /// There is no stack: a deploy creates it with everything in the template.
    NewStack {
        stack: String,
        review: Review,
    },
    Change(PlannedChange),
}

impl Preview {
    /// The review of what would change; `None` when nothing would.
    pub fn review(&self) -> Option<&Review> {
        match self {
            Preview::UpToDate { .. } => None,
            Preview::NewStack { review, .. } => Some(review),
            Preview::Change(planned) => Some(&planned.review),
        }
    }
}

/// How a deploy (or one of its two steps) ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum DeployOutcome {
    UpToDate {
        stack: String,
    },
    Deployed {
        stack: String,
        outputs: BTreeMap<String, String>,
    },
    /// Step one of two: the change set exists and passed the guard.
    Prepared {
        stack: String,
        change_set: String,
    },
    /// The guard refused; the change set was deleted.
    Refused {
        stack: String,
        refusals: Vec<Refusal>,
    },
    /// Not approved; the change set was deleted.
    Declined {
        stack: String,
        reason: Option<String>,
    },
    /// CloudFormation could not apply it (and rolled back).
    Failed(StackFailure),
}

impl DeployOutcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, DeployOutcome::UpToDate { .. } | DeployOutcome::Deployed { .. } | DeployOutcome::Prepared { .. })
    }
}

impl fmt::Display for DeployOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployOutcome::UpToDate { stack } => write!(f, "no changes: {stack} is up to date"),
            DeployOutcome::Deployed { stack, outputs } => {
                write!(f, "\n{stack} deployed\n{}", OutputsTable(outputs))
            }
            DeployOutcome::Prepared { change_set, .. } => write!(f, "prepared change set {change_set}"),
            DeployOutcome::Refused { refusals, .. } => {
                writeln!(f, "refused: this change would lose data:")?;
                for r in refusals {
                    writeln!(
                        f,
                        "  {} ({}): {} [rule {}]",
                        r.change.logical_resource_id, r.change.resource_type, r.why, r.rule
                    )?;
                }
                let ids: std::collections::BTreeSet<&str> =
                    refusals.iter().map(|r| r.change.logical_resource_id.as_str()).collect();
                let flags: Vec<String> = ids.iter().map(|id| format!("--allow-replace {id}")).collect();
                write!(f, "the change set was deleted; re-run with {} if losing that data is intended", flags.join(" "))
            }
            DeployOutcome::Declined { reason, .. } => {
                write!(f, "not deployed; the change set was deleted")?;
                match reason {
                    Some(reason) => write!(f, " ({reason})"),
                    None => Ok(()),
                }
            }
            DeployOutcome::Failed(failure) => failure.fmt(f),
        }
    }
}

/// Outputs as aligned `KEY  VALUE` lines.
pub struct OutputsTable<'a>(pub &'a BTreeMap<String, String>);

impl fmt::Display for OutputsTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "(no outputs)");
        }
        let width = self.0.keys().map(String::len).max().unwrap_or(0);
        let lines: Vec<String> = self.0.iter().map(|(k, v)| format!("{k:<width$}  {v}")).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

/// One resource `destroy` deletes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Doomed {
    pub logical_id: String,
    pub resource_type: String,
    pub physical_id: String,
    /// What goes with it: a queue's backlog, a stateful resource's data.
    pub holds: Option<String>,
}

/// What `destroy` would delete and keep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestroyPlan {
    pub stack: String,
    /// Termination protection is on, and the user said to turn it off first.
    pub unprotect: bool,
    pub deletes: Vec<Doomed>,
    /// `DeletionPolicy: Retain`: stays in the account, as `(logical ID, physical ID)`.
    pub keeps: Vec<(String, String)>,
}

impl fmt::Display for DestroyPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unprotect {
            writeln!(f, "termination protection of {} is turned off first (--unprotect)", self.stack)?;
        }
        write!(f, "destroying {} deletes:", self.stack)?;
        for d in &self.deletes {
            write!(f, "\n  {} ({}) {}", d.logical_id, d.resource_type, d.physical_id)?;
            if let Some(holds) = &d.holds {
                write!(f, "  {holds}")?;
            }
        }
        for (id, physical) in &self.keeps {
            write!(f, "\nand keeps (DeletionPolicy: Retain): {id} {physical}")?;
        }
        Ok(())
    }
}

/// How `destroy` ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum DestroyOutcome {
    NoStack { stack: String },
    Destroyed { stack: String, kept: Vec<(String, String)> },
    Failed(StackFailure),
}

impl fmt::Display for DestroyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestroyOutcome::NoStack { stack } => write!(f, "no stack {stack}: nothing to destroy"),
            DestroyOutcome::Destroyed { stack, kept } => {
                write!(f, "{stack} destroyed")?;
                for (id, physical) in kept {
                    write!(f, "\nretained (DeletionPolicy: Retain), still in the account: {id} {physical}")?;
                }
                Ok(())
            }
            DestroyOutcome::Failed(failure) => failure.fmt(f),
        }
    }
}

/// The deploy commands, over clients it owns.
pub struct Deployer {
    cfn: Cfn,
    s3: S3,
    sqs: aws_sdk_sqs::Client,
    sts: aws_sdk_sts::Client,
    ddb: aws_sdk_dynamodb::Client,
    /// The caller's account: the owner the asset bucket must have. Asked once.
    account: tokio::sync::OnceCell<String>,
    plain_http: bool,
    /// While a stack policy is lifted for an update: the stack and the policy to restore
    /// ([`Deployer::restore_lifted`], for an interrupted run).
    lifted: std::sync::Mutex<Option<(String, serde_json::Value)>>,
}

impl Deployer {
    /// Clients for `config`, one configuration (profile files, region chain) for all. With a
    /// custom endpoint (a local one), S3 uses path-style addressing: local endpoints have no
    /// per-bucket host names.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        let endpoint = config.endpoint_url();
        let s3 = aws_sdk_s3::config::Builder::from(config).force_path_style(endpoint.is_some()).build();
        Deployer {
            cfn: Cfn::new(config),
            s3: S3::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            ddb: aws_sdk_dynamodb::Client::new(config),
            account: tokio::sync::OnceCell::new(),
            plain_http: endpoint.is_some_and(|e| e.starts_with("http://")),
            lifted: std::sync::Mutex::new(None),
        }
    }

    /// The stateful resources the stack policy must protect: those of the new template and,
    /// when the stack exists, of the deployed one.
    async fn protected_ids(&self, t: &Target, exists: bool) -> Result<std::collections::BTreeSet<String>> {
        let local: serde_json::Value = serde_json::from_str(&t.template_json()?)
            .map_err(|e| DeployError::Usage(format!("the rendered template is not JSON: {e}")))?;
        let mut ids = guard::stateful_ids(&local);
        if exists {
            ids.extend(guard::stateful_ids(&cf::deployed_template(&self.cfn, &t.name).await?));
        }
        Ok(ids)
    }

    /// Sets `policy` on the stack unless CloudFormation already holds it.
    async fn ensure_policy(
        &self,
        stack: &str,
        policy: &serde_json::Value,
        lifted: &[String],
        progress: Report<'_>,
    ) -> Result<()> {
        if cf::stack_policy(&self.cfn, stack).await?.as_ref() != Some(policy) {
            cf::set_stack_policy(&self.cfn, stack, policy).await?;
            progress(Progress::PolicySet { stack: stack.to_owned(), lifted: lifted.to_vec() });
        }
        Ok(())
    }

    /// Restores the stack policy a run lifted and was interrupted before restoring (Ctrl-C
    /// while following an update): the stack, when there was one to restore. A run killed
    /// outright leaves it to the next deploy, which checks the policy every time.
    pub async fn restore_lifted(&self) -> Result<Option<String>> {
        let lifted = self.lifted.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some((stack, policy)) = lifted else { return Ok(None) };
        cf::set_stack_policy(&self.cfn, &stack, &policy).await?;
        Ok(Some(stack))
    }

    /// The account the credentials belong to (STS `GetCallerIdentity`, which needs no
    /// permission).
    pub async fn account(&self) -> Result<&str> {
        let id = self
            .account
            .get_or_try_init(|| async {
                let me = self
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| DeployError::aws("find the caller's account", &e))?;
                me.account().map(str::to_owned).ok_or_else(|| DeployError::Aws {
                    what: "find the caller's account".to_owned(),
                    message: "GetCallerIdentity answered without an account".to_owned(),
                })
            })
            .await?;
        Ok(id)
    }

    /// Creates the asset bucket, or with `update` also secures one that exists (its settings
    /// are otherwise left alone).
    pub async fn bootstrap(&self, bucket: &str, update: bool, progress: Report<'_>) -> Result<cf::Bootstrapped> {
        cf::bootstrap(&self.s3, bucket, self.plain_http, update, progress).await
    }

    /// Uploads the Lambda zips under their SHA-256 keys; returns the template parameters
    /// (asset bucket and code keys, plus `--parameters`).
    pub async fn publish_assets(
        &self,
        t: &Target,
        options: &DeployOptions,
        progress: Report<'_>,
    ) -> Result<BTreeMap<String, String>> {
        self.asset_parameters(t, options, true, progress).await
    }

    /// The template parameters (asset bucket, code keys, `--parameters`), the zips uploaded
    /// when `upload`; without, a bucket not given is left out (the stack keeps its own).
    async fn asset_parameters(
        &self,
        t: &Target,
        options: &DeployOptions,
        upload: bool,
        progress: Report<'_>,
    ) -> Result<BTreeMap<String, String>> {
        let bucket = match (options.asset_bucket.as_deref(), upload) {
            (Some(b), _) => Some(b),
            (None, false) => None,
            (None, true) => return Err(DeployError::Usage("--asset-bucket is required: the Lambda zips are uploaded there (create one with `cargo run --bin deploy -- bootstrap --asset-bucket NAME`)".to_owned())),
        };
        let lambda_dir = options.lambda_dir.clone().unwrap_or_else(crate::assets::default_lambda_dir);
        let mut parameters = BTreeMap::new();
        if let Some(bucket) = bucket {
            parameters.insert(cfn::constructs::lambda::ASSET_BUCKET_PARAMETER.to_owned(), bucket.to_owned());
        }
        for asset in &t.assets {
            // Rezipping several MB is seconds of CPU: off the async threads, so Ctrl-C and
            // progress are not held up.
            let (p, body) = {
                let (owned, dir) = (asset.clone(), lambda_dir.clone());
                tokio::task::spawn_blocking(move || -> Result<_> {
                    let p = crate::assets::package(&owned, &dir)?;
                    let body = std::fs::read(&p.path).map_err(|source| DeployError::Io {
                        what: format!("cannot read {}", p.path.display()),
                        source,
                    })?;
                    Ok((p, body))
                })
                .await
                .map_err(|_| DeployError::Interrupted(format!("packaging {}", asset.name)))??
            };
            if let (Some(bucket), true) = (bucket, upload) {
                let uploaded = cf::upload_once(&self.s3, bucket, Some(self.account().await?), &p.key(), body).await?;
                progress(Progress::Asset {
                    name: asset.name.clone(),
                    bytes: p.bytes,
                    url: format!("s3://{bucket}/{}", p.key()),
                    uploaded,
                });
            }
            parameters.insert(asset.key_parameter.clone(), p.key());
        }
        for kv in &options.parameters {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| DeployError::Usage(format!("--parameters {kv:?}: expected KEY=VALUE")))?;
            if !t.template.parameters.keys().any(|p| p.as_str() == k) {
                let known: Vec<&str> = t.template.parameters.keys().map(|p| p.as_str()).collect();
                return Err(DeployError::Usage(format!(
                    "--parameters {k}: the template has no such parameter (it has {})",
                    known.join(", ")
                )));
            }
            parameters.insert(k.to_owned(), v.to_owned());
        }
        Ok(parameters)
    }

    /// Publishes the assets, creates a change set and reviews it; `UpToDate` when the stack
    /// already runs this template with these parameters, or CloudFormation finds nothing to do.
    pub async fn plan(&self, t: &Target, options: &DeployOptions, progress: Report<'_>) -> Result<Plan> {
        self.plan_as(t, options, false, progress).await
    }

    /// [`Deployer::plan`]; with `dry`, nothing is uploaded (the code keys are computed, a
    /// bucket not given is the stack's own) and a template too large to pass inline is an
    /// error.
    async fn plan_as(&self, t: &Target, options: &DeployOptions, dry: bool, progress: Report<'_>) -> Result<Plan> {
        let parameters = self.asset_parameters(t, options, !dry, progress).await?;
        let deployed = cf::describe(&self.cfn, &t.name).await?;
        let status = deployed.as_ref().and_then(|d| d.stack_status().cloned());
        if let Some(status) = &status {
            if let Some(blocker) = Blocker::of(status, &t.name) {
                return Err(DeployError::Blocked(blocker));
            }
            if !status.deployed() {
                progress(Progress::ReviewInProgress { stack: t.name.clone() });
            }
        }
        let exists = status.as_ref().is_some_and(StackState::deployed);
        let body = t.template_json()?;
        let settled_ok = status.as_ref().is_some_and(|s| s.settled() == Some(true));
        let local: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| DeployError::Usage(format!("the rendered template is not JSON: {e}")))?;
        // Parameters this deploy does not give keep the deployed stack's values (an AlarmEmail
        // set once is not reset to its default by the next deploy).
        let previous = deployed.as_ref().filter(|_| exists).map(cf::parameters_of).unwrap_or_default();
        let keep: Vec<String> = t
            .template
            .parameters
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| !parameters.contains_key(k) && previous.contains_key(k))
            .collect();
        let mut effective = parameters.clone();
        effective.extend(keep.iter().map(|k| (k.clone(), previous[k].clone())));
        let current = match &deployed {
            Some(d) if settled_ok => cf::is_current(&self.cfn, d, &local, &effective).await?,
            _ => false,
        };
        if current {
            return Ok(Plan::UpToDate { stack: t.name.clone() });
        }
        let source = if dry && body.len() > cf::MAX_TEMPLATE_BODY {
            return Err(DeployError::Usage(format!("the template is {} bytes, over CloudFormation's {} for an inline template, and diff uploads nothing: compare with `diff --template` or `diff --from`", body.len(), cf::MAX_TEMPLATE_BODY)));
        } else {
            let owner = match options.asset_bucket {
                Some(_) => Some(self.account().await?),
                None => None,
            };
            cf::template_source(&self.s3, options.asset_bucket.as_deref(), owner, body).await?
        };
        progress(Progress::CreatingChangeSet { stack: t.name.clone(), update: exists });
        if !exists && !options.import_existing {
            if let Some((id, name)) = self.retained_in_the_way(t).await? {
                return Err(DeployError::RetainedExists { stack: t.name.clone(), logical_id: id, name });
            }
        }
        let request = cf::ChangeSetRequest {
            template: source,
            parameters,
            keep,
            tags: cf::merged_tags(&deployed.as_ref().map(cf::tags_of).unwrap_or_default(), &t.tag),
            exists,
            import_existing: options.import_existing,
        };
        Ok(match cf::plan(&self.cfn, &t.name, request, progress).await? {
            Some(mut planned) => {
                self.compare_templates(t, exists, &mut planned.review).await?;
                Plan::Change(planned)
            }
            None => Plan::UpToDate { stack: t.name.clone() },
        })
    }

    /// A retained resource a new stack would have to create under a name that exists already
    /// (the table, kept when an earlier stack was destroyed): its logical ID and name.
    async fn retained_in_the_way(&self, t: &Target) -> Result<Option<(String, String)>> {
        for (id, name) in &t.tables {
            match self.ddb.describe_table().table_name(name).send().await {
                Ok(_) => return Ok(Some((id.clone(), name.clone()))),
                Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {}
                Err(e) => return Err(DeployError::aws(format!("look up the table {name}"), &e)),
            }
        }
        Ok(None)
    }

    /// Adds to `review` what the change set does not show: the deployed template compared with
    /// the new one ([`guard::compare_templates`], a `Retain` dropped, say).
    async fn compare_templates(&self, t: &Target, exists: bool, review: &mut Review) -> Result<()> {
        if exists {
            let local: serde_json::Value = serde_json::from_str(&t.template_json()?)
                .map_err(|e| DeployError::Usage(format!("the rendered template is not JSON: {e}")))?;
            let deployed = cf::deployed_template(&self.cfn, &t.name).await?;
            review.refused.extend(guard::compare_templates(&deployed, &local));
        }
        Ok(())
    }

    /// Deletes a change set that will not be executed.
    pub async fn discard(&self, planned: &PlannedChange, progress: Report<'_>) {
        cf::delete_change_set(&self.cfn, &planned.stack, &planned.id, progress).await;
    }

    /// Plans, then executes what the guard lets through and `approve` approves (asked only
    /// when the approval level needs it).
    pub async fn deploy(
        &self,
        t: &Target,
        options: &DeployOptions,
        approve: &mut (dyn FnMut(&PlannedChange) -> Approval + Send),
        progress: Report<'_>,
    ) -> Result<DeployOutcome> {
        match self.plan(t, options, progress).await? {
            Plan::UpToDate { stack } => {
                // Nothing to change, but the protection is checked all the same: an earlier run
                // may have been stopped while it was lifted.
                if cf::stack_status(&self.cfn, &stack).await?.is_some_and(|s| s.deployed()) {
                    let ids = self.protected_ids(t, true).await?;
                    self.ensure_policy(&stack, &guard::stack_policy(&ids, &[]), &[], progress).await?;
                }
                Ok(DeployOutcome::UpToDate { stack })
            }
            Plan::Change(planned) => self.decide_and_execute(t, planned, options, approve, progress).await,
        }
    }

    /// Step one of a two-step deploy: plans and checks the guard; leaves the change set for
    /// [`Deployer::execute_prepared`] (or deletes it when refused).
    pub async fn prepare(
        &self,
        t: &Target,
        options: &DeployOptions,
        progress: Report<'_>,
    ) -> Result<(Plan, DeployOutcome)> {
        let plan = self.plan(t, options, progress).await?;
        if let Plan::Change(planned) = &plan {
            progress(Progress::Reviewed(planned.clone()));
        }
        let outcome = match &plan {
            Plan::UpToDate { stack } => DeployOutcome::UpToDate { stack: stack.clone() },
            Plan::Change(planned) => match Verdict::of(&planned.review, options) {
                Verdict::Refused(refusals) => {
                    self.discard(planned, progress).await;
                    DeployOutcome::Refused { stack: t.name.clone(), refusals }
                }
                Verdict::Go | Verdict::NeedsApproval => {
                    DeployOutcome::Prepared { stack: t.name.clone(), change_set: planned.id.clone() }
                }
            },
        };
        Ok((plan, outcome))
    }

    /// Step two: reviews the prepared change set again, as AWS describes it now, and executes it
    /// if the guard and the approval still let it through.
    pub async fn execute_prepared(
        &self,
        t: &Target,
        change_set: &str,
        options: &DeployOptions,
        approve: &mut (dyn FnMut(&PlannedChange) -> Approval + Send),
        progress: Report<'_>,
    ) -> Result<DeployOutcome> {
        // Only a change set of this stack that can still be executed: not another stack's, not
        // one executed, failed or made obsolete since it was prepared.
        let (of_stack, status) = cf::change_set_state(&self.cfn, &t.name, change_set).await?;
        if of_stack.as_deref().is_some_and(|s| s != t.name) {
            return Err(DeployError::ChangeSetUnusable {
                change_set: change_set.to_owned(),
                why: format!("it belongs to stack {}, not {}", of_stack.unwrap_or_default(), t.name),
            });
        }
        if status.as_deref() != Some("AVAILABLE") {
            return Err(DeployError::ChangeSetUnusable {
                change_set: change_set.to_owned(),
                why: format!(
                    "its ExecutionStatus is {}, not AVAILABLE (executed, failed or made obsolete since it was prepared): prepare a new one",
                    status.as_deref().unwrap_or("not given")
                ),
            });
        }
        match cf::review_change_set(&self.cfn, &t.name, change_set, progress).await? {
            None => Ok(DeployOutcome::UpToDate { stack: t.name.clone() }),
            Some(mut review) => {
                let exists = cf::stack_status(&self.cfn, &t.name).await?.is_some_and(|s| s.deployed());
                self.compare_templates(t, exists, &mut review).await?;
                let planned = PlannedChange { stack: t.name.clone(), id: change_set.to_owned(), review };
                self.decide_and_execute(t, planned, options, approve, progress).await
            }
        }
    }

    async fn decide_and_execute(
        &self,
        t: &Target,
        planned: PlannedChange,
        options: &DeployOptions,
        approve: &mut (dyn FnMut(&PlannedChange) -> Approval + Send),
        progress: Report<'_>,
    ) -> Result<DeployOutcome> {
        let stack = t.name.clone();
        progress(Progress::Reviewed(planned.clone()));
        match Verdict::of(&planned.review, options) {
            Verdict::Refused(refusals) => {
                self.discard(&planned, progress).await;
                return Ok(DeployOutcome::Refused { stack, refusals });
            }
            Verdict::NeedsApproval => match approve(&planned) {
                Approval::Yes => {}
                Approval::No => {
                    self.discard(&planned, progress).await;
                    return Ok(DeployOutcome::Declined { stack, reason: None });
                }
                Approval::Unavailable(reason) => {
                    self.discard(&planned, progress).await;
                    return Ok(DeployOutcome::Declined { stack, reason: Some(reason) });
                }
            },
            Verdict::Go => {}
        }
        self.execute(t, &planned, options, progress).await
    }

    /// Sets the stack policy (lifted for the resources named by `--allow-replace` that the change
    /// set replaces or deletes), executes the change set, follows the events, restores the
    /// policy whatever happened, and reads the outputs.
    async fn execute(
        &self,
        t: &Target,
        planned: &PlannedChange,
        options: &DeployOptions,
        progress: Report<'_>,
    ) -> Result<DeployOutcome> {
        // Layer 3: the stack policy protects every stateful resource, of the deployed template
        // and the new one, on the server.
        let exists = cf::stack_status(&self.cfn, &t.name).await?.is_some_and(|s| s.deployed());
        let ids = self.protected_ids(t, exists).await?;
        let protected = guard::stack_policy(&ids, &[]);
        let lifted = guard::to_lift(&planned.review, &options.allow_replace);
        if exists {
            if !lifted.is_empty() {
                *self.lifted.lock().unwrap_or_else(|p| p.into_inner()) = Some((t.name.clone(), protected.clone()));
            }
            self.ensure_policy(&t.name, &guard::stack_policy(&ids, &lifted), &lifted, progress).await?;
        }
        let ran = self.run_change_set(t, planned, progress).await;
        // Restored on every path: a failed execute, a failed update, an error while following.
        let restored = match cf::stack_status(&self.cfn, &t.name).await {
            Ok(Some(status)) if status.deployed() => self.ensure_policy(&t.name, &protected, &[], progress).await,
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if restored.is_ok() {
            *self.lifted.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        let (failure, deployed) = ran?;
        restored?;
        if let Some(failure) = failure {
            return Ok(DeployOutcome::Failed(failure));
        }
        let deployed = deployed.ok_or_else(|| DeployError::Disappeared(t.name.clone()))?;
        // Termination protection: deleting the stack takes a named override (`destroy
        // --unprotect`), from this tool or any other. Not being able to turn it on does not undo
        // the deploy; it is reported.
        if deployed.enable_termination_protection() != Some(true) {
            match cf::protect(&self.cfn, &t.name, true).await {
                Ok(()) => progress(Progress::Protected { stack: t.name.clone() }),
                Err(e) => progress(Progress::Warning { message: e.to_string() }),
            }
        }
        Ok(DeployOutcome::Deployed { stack: t.name.clone(), outputs: cf::outputs_of(&deployed) })
    }

    /// Executes the change set and follows the stack's events: the first failure, if any, and
    /// the stack as it ends.
    async fn run_change_set(
        &self,
        t: &Target,
        planned: &PlannedChange,
        progress: Report<'_>,
    ) -> Result<(Option<cf::StackFailure>, Option<aws_sdk_cloudformation::types::Stack>)> {
        let seen = cf::event_ids(&self.cfn, &t.name).await;
        // A retried call (the SDK retries) executes the change set once.
        let token = format!("deploy-{}", &crate::assets::sha256_hex(planned.id.as_bytes())[..32]);
        let execute = self.cfn.execute_change_set().change_set_name(&planned.id).stack_name(&t.name);
        if let Err(e) = execute.client_request_token(token).send().await {
            self.discard(planned, progress).await;
            return Err(DeployError::aws("execute the change set (the change set has been deleted since)", &e));
        }
        let failure = cf::follow(&self.cfn, &t.name, seen, false, progress).await?;
        Ok((failure, cf::describe(&self.cfn, &t.name).await?))
    }

    /// What a deploy would change, leaving nothing behind: for an existing stack from a change
    /// set created and deleted again (the code keys computed, nothing uploaded); for a new one
    /// from the template alone.
    pub async fn diff(&self, t: &Target, options: &DeployOptions, progress: Report<'_>) -> Result<Preview> {
        // A change set for a new stack would leave the stack behind, in REVIEW_IN_PROGRESS.
        if cf::describe(&self.cfn, &t.name).await?.is_none() {
            let local: serde_json::Value = serde_json::from_str(&t.template_json()?)
                .map_err(|e| DeployError::Usage(format!("the rendered template is not JSON: {e}")))?;
            let mut review = crate::offline::diff(&serde_json::json!({}), &local).review;
            if let Some((id, name)) = self.retained_in_the_way(t).await? {
                if !options.import_existing {
                    return Err(DeployError::RetainedExists { stack: t.name.clone(), logical_id: id, name });
                }
                for c in review.changes.iter_mut().filter(|c| c.logical_resource_id == id) {
                    c.action = guard::Action::Import;
                }
            }
            return Ok(Preview::NewStack { stack: t.name.clone(), review });
        }
        Ok(match self.plan_as(t, options, true, progress).await? {
            Plan::UpToDate { stack } => Preview::UpToDate { stack },
            Plan::Change(planned) => {
                self.discard(&planned, progress).await;
                Preview::Change(planned)
            }
        })
    }

    /// Resource-level differences between the deployed template and the local one.
    pub async fn template_diff(&self, t: &Target) -> Result<Vec<String>> {
        let deployed = cf::deployed_template(&self.cfn, &t.name).await?;
        let local: serde_json::Value = serde_json::from_str(&t.template_json()?)
            .map_err(|e| DeployError::Usage(format!("the rendered template is not JSON: {e}")))?;
        Ok(cf::template_diff(&deployed, &local))
    }

    /// What destroying the stack deletes (queues with their depths) and keeps; `None` when
    /// there is no stack. A stack without this app's tag is refused unless `force`; one with
    /// termination protection unless `unprotect`.
    pub async fn destroy_plan(&self, t: &Target, force: bool, unprotect: bool) -> Result<Option<DestroyPlan>> {
        let Some(stack) = cf::describe(&self.cfn, &t.name).await? else { return Ok(None) };
        let protected = stack.enable_termination_protection() == Some(true);
        if protected && !unprotect {
            return Err(DeployError::Protected(t.name.clone()));
        }
        let (key, value) = (&t.tag.0, &t.tag.1);
        let ours = stack.tags().iter().any(|tag| tag.key() == Some(key) && tag.value() == Some(value));
        if !ours && !force {
            return Err(DeployError::NotOurs { stack: t.name.clone(), key: key.clone(), value: value.clone() });
        }
        let deployed = cf::deployed_template(&self.cfn, &t.name).await?;
        let physical = cf::resources(&self.cfn, &t.name).await?;
        let mut plan =
            DestroyPlan { stack: t.name.clone(), unprotect: protected, deletes: Vec::new(), keeps: Vec::new() };
        for (id, r) in deployed["Resources"].as_object().into_iter().flatten() {
            let ty = r["Type"].as_str().unwrap_or_default();
            let physical_id = physical.get(id).map(|r| r.physical_id.clone()).unwrap_or_default();
            if r["DeletionPolicy"] == "Retain" {
                plan.keeps.push((id.clone(), physical_id));
                continue;
            }
            let holds = if ty == cfn::constructs::sqs::Queue::TYPE && !physical_id.is_empty() {
                Some(match crate::queue::depth(&self.sqs, &physical_id).await {
                    Ok(d) => format!("with {} waiting and {} in flight message(s)", d.waiting, d.in_flight),
                    Err(_) => "(its depth could not be read)".to_owned(),
                })
            } else {
                guard::is_stateful(ty).then(|| "with its data".to_owned())
            };
            plan.deletes.push(Doomed { logical_id: id.clone(), resource_type: ty.to_owned(), physical_id, holds });
        }
        Ok(Some(plan))
    }

    /// Deletes the stack `plan` describes and follows it to the end.
    pub async fn destroy(&self, plan: DestroyPlan, progress: Report<'_>) -> Result<DestroyOutcome> {
        if plan.unprotect {
            cf::protect(&self.cfn, &plan.stack, false).await?;
        }
        let seen = cf::event_ids(&self.cfn, &plan.stack).await;
        self.cfn
            .delete_stack()
            .stack_name(&plan.stack)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("delete {}", plan.stack), &e))?;
        Ok(match cf::follow(&self.cfn, &plan.stack, seen, true, progress).await? {
            Some(failure) => DestroyOutcome::Failed(failure),
            None => DestroyOutcome::Destroyed { stack: plan.stack, kept: plan.keeps },
        })
    }

    /// The stack's outputs.
    pub async fn outputs(&self, t: &Target) -> Result<BTreeMap<String, String>> {
        cf::outputs(&self.cfn, &t.name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{Action, Replacement, ResourceChange};

    fn change(ty: &str, replacement: Replacement) -> ResourceChange {
        ResourceChange { replacement: Some(replacement), ..ResourceChange::new(Action::Modify, "X", ty) }
    }

    #[test]
    fn approval_levels_mean_what_the_cdk_clis_do() {
        let plain = guard::review(vec![change("AWS::Lambda::Function", Replacement::False)]);
        let iam = guard::review(vec![change("AWS::IAM::Role", Replacement::False)]);
        let lossy = guard::review(vec![change("AWS::SQS::Queue", Replacement::True)]);
        let allowed = ["X".to_owned()];
        use RequireApproval::*;
        for (level, plain_asks, iam_asks, lossy_asks) in [
            (Never, false, false, false),
            (AnyChange, true, true, true),
            (Broadening, false, true, true),
            (Destructive, false, false, true),
        ] {
            assert_eq!(level.needs_approval(&plain, &[]), plain_asks, "{level:?} plain");
            assert_eq!(level.needs_approval(&iam, &[]), iam_asks, "{level:?} iam");
            assert_eq!(level.needs_approval(&lossy, &allowed), lossy_asks, "{level:?} allowed loss");
        }
    }

    #[test]
    fn the_verdict_refuses_before_it_asks_and_yes_skips_asking() {
        let lossy = guard::review(vec![change("AWS::SQS::Queue", Replacement::True)]);
        let options = DeployOptions::default();
        assert!(matches!(Verdict::of(&lossy, &options), Verdict::Refused(r) if r.len() == 1));
        let yes = DeployOptions { yes: true, ..Default::default() };
        assert!(matches!(Verdict::of(&lossy, &yes), Verdict::Refused(_)), "--yes approves, it does not allow loss");
        let named = DeployOptions { allow_replace: vec!["X".into()], ..Default::default() };
        assert_eq!(Verdict::of(&lossy, &named), Verdict::NeedsApproval);
        let named_yes = DeployOptions { yes: true, ..named };
        assert_eq!(Verdict::of(&lossy, &named_yes), Verdict::Go);
        let plain = guard::review(vec![change("AWS::Lambda::Function", Replacement::False)]);
        assert_eq!(Verdict::of(&plain, &options), Verdict::Go);
    }

    #[test]
    fn outcomes_say_what_happened_and_what_to_do() {
        let refusal = guard::review(vec![change("AWS::DynamoDB::Table", Replacement::True)]).refused;
        let refused = DeployOutcome::Refused { stack: "s".into(), refusals: refusal };
        let text = refused.to_string();
        assert!(text.contains("X (AWS::DynamoDB::Table): replaced"), "{text}");
        assert!(text.ends_with("re-run with --allow-replace X if losing that data is intended"), "{text}");
        assert!(!refused.succeeded());
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(json["outcome"], "refused");
        assert_eq!(json["refusals"][0]["change"]["Replacement"], "True");
        let declined = DeployOutcome::Declined { stack: "s".into(), reason: Some("no terminal".into()) };
        assert_eq!(declined.to_string(), "not deployed; the change set was deleted (no terminal)");
        let outputs = BTreeMap::from([("A".to_owned(), "1".to_owned()), ("Long".to_owned(), "2".to_owned())]);
        assert_eq!(OutputsTable(&outputs).to_string(), "A     1\nLong  2");
        assert_eq!(OutputsTable(&BTreeMap::new()).to_string(), "(no outputs)");
    }
}
