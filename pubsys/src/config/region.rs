//! AWS region names (a leaf module: the AWS service layer and Infra.toml both use it).
use serde::Deserialize;
use std::fmt;

/// An AWS region name, e.g. `us-west-2`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    /// The region name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Region {
    type Error = String;

    /// Lower-case letters, digits and hyphens, starting with a letter.
    fn try_from(text: String) -> std::result::Result<Region, String> {
        let valid = text.starts_with(|c: char| c.is_ascii_lowercase())
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Region(text))
        } else {
            Err(format!("'{text}' is not an AWS region name"))
        }
    }
}

impl From<Region> for String {
    fn from(region: Region) -> String {
        region.0
    }
}

impl std::str::FromStr for Region {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Region, String> {
        Region::try_from(text.to_owned())
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
