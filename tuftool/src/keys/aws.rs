//! The AWS backends of [`crate::keys::KeySource`]: SSM SecureString parameters and KMS keys.
//!
//! Built with the `aws` feature (on by default; pubsys and the `tuftool` binary use it). A
//! library user that only signs with local files (test fixtures, for example) turns default
//! features off and links no AWS SDK: `aws-ssm://` and `aws-kms://` sources still parse, and
//! using one is the error [`crate::error::Error::AwsNotBuilt`].
//!
//! AWS clients come from the workspace's one factory, `aws_context::AwsContext`: a caller that
//! has one (pubsys, with Infra.toml's profile and role chain) hands it in with
//! `KeySource::with_aws`; otherwise one is built for the URL's profile, in its `region` or the
//! SDK's default region.

pub use imp::*;

/// One SSM parameter a key lives in.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub(crate) struct SsmParameter<'a> {
    /// Where the client comes from.
    pub aws: &'a AwsHandle,
    /// The key's profile (the URL's host part), if any.
    pub profile: Option<&'a str>,
    /// Parameter name.
    pub parameter: &'a str,
    /// The parameter's region, else the factory's.
    pub region: Option<&'a str>,
}

/// Boxed error type used by tough's key-source trait.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[cfg(feature = "aws")]
mod imp {
    use super::{BoxError, SsmParameter};
    use crate::error::{self, Result};
    use crate::keys::{KeySource, parse_private_key};
    use aws_context::AwsContext;
    use snafu::{OptionExt, ResultExt};
    use std::fmt;
    use std::sync::Arc;
    use tough::sign::Sign;

    /// The AWS client factory an AWS key source uses: one handed in by the caller, or none
    /// (one is built from the source's profile and region when the key is used). Not part of
    /// a source's identity: two sources that differ only here are equal.
    #[derive(Clone, Default)]
    pub struct AwsHandle(Option<Arc<AwsContext>>);

    impl AwsHandle {
        /// Use `context` for this source's clients.
        pub fn shared(context: Arc<AwsContext>) -> AwsHandle {
            AwsHandle(Some(context))
        }

        /// The factory for a key with `profile` in `region`: the shared one when the source
        /// names no profile of its own, else a new one for that profile.
        async fn context(
            &self,
            profile: Option<&str>,
            region: Option<&str>,
        ) -> Result<Arc<AwsContext>> {
            if let (Some(shared), None) = (&self.0, profile) {
                return Ok(Arc::clone(shared));
            }
            let region = match region {
                Some(region) => region.to_owned(),
                None => aws_config::meta::region::RegionProviderChain::default_provider()
                    .region()
                    .await
                    .map(|r| r.to_string())
                    .context(error::NoAwsRegionSnafu)?,
            };
            let builder = AwsContext::builder(region)
                .profile(profile.map(str::to_owned))
                .session_name("tuftool");
            Ok(Arc::new(builder.build().await))
        }
    }

    impl fmt::Debug for AwsHandle {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match &self.0 {
                Some(context) => write!(
                    f,
                    "AwsHandle(shared, base region {})",
                    context.base_region()
                ),
                None => write!(f, "AwsHandle(from the key's profile)"),
            }
        }
    }

    impl PartialEq for AwsHandle {
        fn eq(&self, _: &AwsHandle) -> bool {
            true
        }
    }

    impl Eq for AwsHandle {}

    impl KeySource {
        /// This source with its AWS clients taken from `context` (a no-op for local files).
        pub fn with_aws(mut self, context: &Arc<AwsContext>) -> KeySource {
            match &mut self {
                KeySource::File { .. } => {}
                KeySource::Ssm { aws, .. } | KeySource::Kms { aws, .. } => {
                    *aws = AwsHandle::shared(Arc::clone(context));
                }
            }
            self
        }
    }

    async fn ssm_client(at: &SsmParameter<'_>) -> Result<aws_sdk_ssm::Client> {
        let context = at.aws.context(at.profile, at.region).await?;
        let region = at.region.unwrap_or(context.base_region());
        context.ssm(region).await.context(error::AwsClientSnafu)
    }

    /// Write a new key's PEM to `at` as a SecureString (never overwriting one).
    pub(crate) async fn store_ssm(
        at: &SsmParameter<'_>,
        kms_key_id: Option<&str>,
        keyid: &[u8],
        pem: &str,
    ) -> Result<()> {
        ssm_client(at)
            .await?
            .put_parameter()
            .name(at.parameter)
            .description(hex::encode(keyid))
            .set_key_id(kms_key_id.map(str::to_owned))
            .overwrite(false)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .value(pem)
            .send()
            .await
            .map_err(|e| error::Error::WriteSsmKey {
                parameter: at.parameter.to_owned(),
                message: aws_sdk_ssm::error::DisplayErrorContext(e).to_string(),
            })?;
        Ok(())
    }

    /// Read and parse the key kept at `at`.
    pub(crate) async fn load_ssm(at: &SsmParameter<'_>) -> Result<Box<dyn Sign>, BoxError> {
        let response = ssm_client(at)
            .await?
            .get_parameter()
            .name(at.parameter)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| aws_sdk_ssm::error::DisplayErrorContext(e).to_string())?;
        let value = response
            .parameter
            .and_then(|p| p.value)
            .ok_or_else(|| format!("SSM parameter {} has no value", at.parameter))?;
        Ok(parse_private_key(value.as_bytes())?)
    }

    /// A signer for the KMS key `key_id`.
    pub(crate) async fn load_kms(
        aws: &AwsHandle,
        profile: Option<&str>,
        key_id: &str,
        region: Option<&str>,
    ) -> Result<Box<dyn Sign>, BoxError> {
        let context = aws.context(profile, region).await?;
        let client = context
            .kms(region.unwrap_or(context.base_region()))
            .await
            .context(error::AwsClientSnafu)?;
        Ok(Box::new(crate::kms::KmsSigner::load(client, key_id).await?))
    }
}

#[cfg(not(feature = "aws"))]
mod imp {
    use super::{BoxError, SsmParameter};
    use crate::error::{self, Result};
    use tough::sign::Sign;

    /// Without the `aws` feature an AWS key source has no client factory.
    #[derive(Clone, Default, Debug, PartialEq, Eq)]
    pub struct AwsHandle(());

    fn not_built(key: String) -> error::Error {
        error::Error::AwsNotBuilt { key }
    }

    /// Always [`error::Error::AwsNotBuilt`].
    pub(crate) async fn store_ssm(
        at: &SsmParameter<'_>,
        _: Option<&str>,
        _: &[u8],
        _: &str,
    ) -> Result<()> {
        Err(not_built(format!("aws-ssm://{}", at.parameter)))
    }

    /// Always [`error::Error::AwsNotBuilt`].
    pub(crate) async fn load_ssm(at: &SsmParameter<'_>) -> Result<Box<dyn Sign>, BoxError> {
        Err(not_built(format!("aws-ssm://{}", at.parameter)).into())
    }

    /// Always [`error::Error::AwsNotBuilt`].
    pub(crate) async fn load_kms(
        _: &AwsHandle,
        _: Option<&str>,
        key_id: &str,
        _: Option<&str>,
    ) -> Result<Box<dyn Sign>, BoxError> {
        Err(not_built(format!("aws-kms:///{key_id}")).into())
    }
}
