//! The one AWS client factory of the workspace.
//!
//! Every command that talks to AWS builds its clients here, from an [`AwsContext`]:
//!
//! 1. **Base credentials**: the named profile if one is set, else the SDK's standard chain
//!    (environment, shared files, SSO, process, IMDS, ...).
//! 2. **Role chain**: the global role, then the region's own role, each assumed through STS
//!    in the **base region** (the first region of the active list), so an account can reach
//!    opt-in regions it has not opted into.
//! 3. **Client** for the service region, with the standard endpoint override
//!    (`AWS_ENDPOINT_URL`, and per-service variables such as `AWS_ENDPOINT_URL_EC2`), read by
//!    the SDK itself. The production binary needs no test hooks: pointing `AWS_ENDPOINT_URL`
//!    at a loopback server is enough.
//!
//! Per-region configurations are built once and cached; clients are cheap to create from
//! them. Tests can add HTTP headers to every request (e.g. `x-moto-account-id` for per-test
//! isolation on a moto server) with [`AwsContextBuilder::header`], and shorten the retry
//! backoff with [`AwsContextBuilder::retry`].
//!
//! ```no_run
//! # async fn example() -> Result<(), aws_context::Error> {
//! let aws = aws_context::AwsContext::builder("us-west-2")
//!     .profile(Some("publisher".to_owned()))
//!     .role(Some("arn:aws:iam::111122223333:role/publish".to_owned()))
//!     .build()
//!     .await;
//! let s3 = aws.s3("us-east-1").await?;
//! # let _ = s3;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_types::sdk_config::SharedCredentialsProvider;
use snafu::Snafu;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::Mutex;

/// Errors building AWS clients.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// A region name was empty.
    #[snafu(display("Empty AWS region name"))]
    EmptyRegion,
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Retry settings for every client (the SDK's standard retry mode).
#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    /// Attempts per call, including the first.
    pub max_attempts: u32,
    /// Backoff before the first retry; later retries back off exponentially (jittered).
    pub initial_backoff: Duration,
}

impl Default for RetrySettings {
    /// 8 attempts, 1 s initial backoff: publishing survives throttling bursts.
    fn default() -> Self {
        RetrySettings {
            max_attempts: 8,
            initial_backoff: Duration::from_secs(1),
        }
    }
}

/// Builder for [`AwsContext`].
#[derive(Debug, Clone)]
pub struct AwsContextBuilder {
    base_region: String,
    profile: Option<String>,
    role: Option<String>,
    region_roles: BTreeMap<String, String>,
    headers: Vec<(String, String)>,
    retry: RetrySettings,
    endpoint_url: Option<String>,
    session_name: String,
    static_credentials: Option<(String, String)>,
}

impl AwsContextBuilder {
    /// Fixed base credentials instead of the profile or standard chain (tests).
    pub fn static_credentials(mut self, access_key: &str, secret_key: &str) -> Self {
        self.static_credentials = Some((access_key.to_owned(), secret_key.to_owned()));
        self
    }

    /// Named profile for base credentials (`None`: the standard chain).
    pub fn profile(mut self, profile: Option<String>) -> Self {
        self.profile = profile;
        self
    }

    /// Role assumed first, for every region.
    pub fn role(mut self, role: Option<String>) -> Self {
        self.role = role;
        self
    }

    /// Role assumed in `region`, after the global role.
    pub fn region_role(mut self, region: impl Into<String>, role: impl Into<String>) -> Self {
        self.region_roles.insert(region.into(), role.into());
        self
    }

    /// Add an HTTP header to every request of every client (tests: `x-moto-account-id`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Retry settings of every client.
    pub fn retry(mut self, retry: RetrySettings) -> Self {
        self.retry = retry;
        self
    }

    /// An explicit endpoint for every service (the environment's `AWS_ENDPOINT_URL` is
    /// used without this).
    pub fn endpoint_url(mut self, url: Option<String>) -> Self {
        self.endpoint_url = url;
        self
    }

    /// The STS session name for assumed roles (default `pubsys`).
    pub fn session_name(mut self, name: impl Into<String>) -> Self {
        self.session_name = name.into();
        self
    }

    /// Load the base configuration (credentials are resolved lazily, at the first call).
    pub async fn build(self) -> AwsContext {
        let base = self.load(&self.base_region).await;
        let global = match &self.role {
            Some(role) => Some(self.assume(&base, role).await),
            None => None,
        };
        AwsContext {
            builder: self,
            base,
            global,
            configs: Mutex::new(HashMap::new()),
        }
    }

    async fn load(&self, region: &str) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(self.retry.max_attempts)
                    .with_initial_backoff(self.retry.initial_backoff),
            );
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some((access_key, secret_key)) = &self.static_credentials {
            loader = loader.credentials_provider(aws_sdk_sts::config::Credentials::new(
                access_key.clone(),
                secret_key.clone(),
                None,
                None,
                "static",
            ));
        }
        loader.load().await
    }

    /// A provider for `role`, authorised by `authority`'s credentials, calling STS in the
    /// base region.
    async fn assume(&self, authority: &SdkConfig, role: &str) -> SharedCredentialsProvider {
        tracing::debug!(role, sts_region = %self.base_region, "assuming role");
        let provider = AssumeRoleProvider::builder(role)
            .session_name(self.session_name.clone())
            .region(Region::new(self.base_region.clone()))
            .configure(authority)
            .build()
            .await;
        SharedCredentialsProvider::new(provider)
    }
}

/// Builds AWS SDK configurations and clients per region (see the crate docs).
#[derive(Debug)]
pub struct AwsContext {
    builder: AwsContextBuilder,
    /// The base configuration: base credentials, base region.
    base: SdkConfig,
    /// Credentials after the global role, if any.
    global: Option<SharedCredentialsProvider>,
    /// Per-region configurations already built.
    configs: Mutex<HashMap<String, SdkConfig>>,
}

impl AwsContext {
    /// Start building a context whose STS calls go to `base_region`.
    pub fn builder(base_region: impl Into<String>) -> AwsContextBuilder {
        AwsContextBuilder {
            base_region: base_region.into(),
            profile: None,
            role: None,
            region_roles: BTreeMap::new(),
            headers: Vec::new(),
            retry: RetrySettings::default(),
            endpoint_url: None,
            session_name: "pubsys".to_owned(),
            static_credentials: None,
        }
    }

    /// The base region (STS calls and the first region of a publish).
    pub fn base_region(&self) -> &str {
        &self.builder.base_region
    }

    /// The SDK configuration for `region`: the role chain applied, the region set.
    pub async fn sdk_config(&self, region: &str) -> Result<SdkConfig> {
        snafu::ensure!(!region.is_empty(), EmptyRegionSnafu);
        let mut configs = self.configs.lock().await;
        if let Some(config) = configs.get(region) {
            return Ok(config.clone());
        }
        let mut builder = self
            .base
            .clone()
            .into_builder()
            .region(Region::new(region.to_owned()));
        if let Some(global) = &self.global {
            builder = builder.credentials_provider(global.clone());
        }
        let mut config = builder.build();
        if let Some(role) = self.builder.region_roles.get(region) {
            // The region's role is assumed with the global role's credentials, through STS
            // in the base region.
            let authority = config
                .clone()
                .into_builder()
                .region(Region::new(self.builder.base_region.clone()))
                .build();
            let provider = self.builder.assume(&authority, role).await;
            config = config.into_builder().credentials_provider(provider).build();
        }
        configs.insert(region.to_owned(), config.clone());
        Ok(config)
    }

    fn interceptor(&self) -> Option<SharedInterceptor> {
        if self.builder.headers.is_empty() {
            None
        } else {
            Some(SharedInterceptor::new(HeaderInterceptor {
                headers: self.builder.headers.clone(),
            }))
        }
    }

    /// An EC2 client for `region`.
    pub async fn ec2(&self, region: &str) -> Result<aws_sdk_ec2::Client> {
        let config = self.sdk_config(region).await?;
        let mut builder = aws_sdk_ec2::config::Builder::from(&config);
        if let Some(interceptor) = self.interceptor() {
            builder = builder.interceptor(interceptor);
        }
        Ok(aws_sdk_ec2::Client::from_conf(builder.build()))
    }

    /// An EBS direct APIs client for `region`.
    pub async fn ebs(&self, region: &str) -> Result<aws_sdk_ebs::Client> {
        let config = self.sdk_config(region).await?;
        let mut builder = aws_sdk_ebs::config::Builder::from(&config);
        if let Some(interceptor) = self.interceptor() {
            builder = builder.interceptor(interceptor);
        }
        Ok(aws_sdk_ebs::Client::from_conf(builder.build()))
    }

    /// A KMS client for `region` (signing with keys kept in KMS).
    pub async fn kms(&self, region: &str) -> Result<aws_sdk_kms::Client> {
        let config = self.sdk_config(region).await?;
        let mut builder = aws_sdk_kms::config::Builder::from(&config);
        if let Some(interceptor) = self.interceptor() {
            builder = builder.interceptor(interceptor);
        }
        Ok(aws_sdk_kms::Client::from_conf(builder.build()))
    }

    /// An SSM client for `region`.
    pub async fn ssm(&self, region: &str) -> Result<aws_sdk_ssm::Client> {
        let config = self.sdk_config(region).await?;
        let mut builder = aws_sdk_ssm::config::Builder::from(&config);
        if let Some(interceptor) = self.interceptor() {
            builder = builder.interceptor(interceptor);
        }
        Ok(aws_sdk_ssm::Client::from_conf(builder.build()))
    }

    /// An S3 client for `region` (path-style addressing when an endpoint override is set, so
    /// loopback servers work with any host name).
    pub async fn s3(&self, region: &str) -> Result<aws_sdk_s3::Client> {
        let config = self.sdk_config(region).await?;
        let mut builder = aws_sdk_s3::config::Builder::from(&config);
        if config.endpoint_url().is_some() {
            builder = builder.force_path_style(true);
        }
        if let Some(interceptor) = self.interceptor() {
            builder = builder.interceptor(interceptor);
        }
        Ok(aws_sdk_s3::Client::from_conf(builder.build()))
    }

    /// An STS client for `region` with that region's role chain (e.g. `GetCallerIdentity`
    /// to learn which account a region publishes from).
    pub async fn sts(&self, region: &str) -> Result<aws_sdk_sts::Client> {
        let config = self.sdk_config(region).await?;
        let mut builder = aws_sdk_sts::config::Builder::from(&config);
        if let Some(interceptor) = self.interceptor() {
            builder = builder.interceptor(interceptor);
        }
        Ok(aws_sdk_sts::Client::from_conf(builder.build()))
    }
}

/// Adds fixed headers to every request before signing.
#[derive(Debug)]
struct HeaderInterceptor {
    headers: Vec<(String, String)>,
}

impl Intercept for HeaderInterceptor {
    fn name(&self) -> &'static str {
        "aws-context-headers"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), BoxError> {
        for (name, value) in &self.headers {
            context
                .request_mut()
                .headers_mut()
                .insert(name.clone(), value.clone());
        }
        Ok(())
    }
}
