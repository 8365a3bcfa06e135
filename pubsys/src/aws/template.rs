//! SSM parameter templates (reference format, `pubsys.md` §8).
//!
//! ```toml
//! [[parameter]]
//! name  = "{variant}/{arch}/{image_version}/image_id"
//! value = "{image_id}"
//! variant = ["aws-ecs-1"]   # optional filter
//! arch = ["arm64"]          # optional filter, EC2 spelling
//! ```
//!
//! Variables: `variant`, `arch`, `image_version`, `image_id`, `image_name`, `region`.
//! `{{` and `}}` (or `\{`) write literal braces. An unknown variable is an error. Unlike the
//! reference (TinyTemplate), values are not HTML-escaped: a parameter value is not HTML.

use crate::error::{self, Result};
use serde::Deserialize;
use snafu::ResultExt;
use std::collections::BTreeMap;
use std::path::Path;

/// One `[[parameter]]`.
#[derive(Debug, Clone, Deserialize)]
pub struct Template {
    /// Parameter name template (joined to `aws.ssm_prefix`).
    pub name: String,
    /// Value template.
    pub value: String,
    /// Variants it applies to (empty: all).
    #[serde(default)]
    pub variant: Vec<String>,
    /// Architectures it applies to (empty: all).
    #[serde(default)]
    pub arch: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct TemplateFile {
    #[serde(default)]
    parameter: Vec<Template>,
}

/// Read a template file; it must hold at least one `[[parameter]]`.
pub fn load(path: &Path) -> Result<Vec<Template>> {
    let bytes = super::read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let file: TemplateFile = toml::from_str(&text).context(error::ParseTemplatesSnafu { path })?;
    snafu::ensure!(!file.parameter.is_empty(), error::NoTemplatesSnafu { path });
    Ok(file.parameter)
}

/// The templates that apply to `variant` and `arch` (EC2 spelling).
pub fn applicable<'a>(templates: &'a [Template], variant: &str, arch: &str) -> Vec<&'a Template> {
    templates
        .iter()
        .filter(|t| t.variant.is_empty() || t.variant.iter().any(|v| v == variant))
        .filter(|t| t.arch.is_empty() || t.arch.iter().any(|a| a == arch))
        .collect()
}

/// Variable values for rendering.
pub type Vars<'a> = BTreeMap<&'static str, &'a str>;

/// The variables a template uses.
pub fn variables(template: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    walk(template, &mut |piece| {
        if let Piece::Var(name) = piece {
            names.push(name.to_owned());
        }
        Ok(())
    })?;
    Ok(names)
}

enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn walk<'a>(template: &'a str, visit: &mut dyn FnMut(Piece<'a>) -> Result<()>) -> Result<()> {
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix("{{") {
            visit(Piece::Text("{"))?;
            rest = tail;
        } else if let Some(tail) = rest.strip_prefix("}}") {
            visit(Piece::Text("}"))?;
            rest = tail;
        } else if let Some(tail) = rest.strip_prefix("\\{") {
            visit(Piece::Text("{"))?;
            rest = tail;
        } else if let Some(tail) = rest.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return error::RenderSnafu {
                    template,
                    message: "unclosed '{'",
                }
                .fail();
            };
            visit(Piece::Var(tail[..end].trim()))?;
            rest = &tail[end + 1..];
        } else {
            let next = rest.find(['{', '}', '\\']).unwrap_or(rest.len());
            let next = if next == 0 { 1 } else { next };
            visit(Piece::Text(&rest[..next]))?;
            rest = &rest[next..];
        }
    }
    Ok(())
}

/// Render `template` with `vars`.
pub fn render(template: &str, vars: &Vars<'_>) -> Result<String> {
    let mut out = String::new();
    walk(template, &mut |piece| {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Var(name) => match vars.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    return error::RenderSnafu {
                        template,
                        message: format!("unknown variable '{name}'"),
                    }
                    .fail();
                }
            },
        }
        Ok(())
    })?;
    Ok(out)
}

/// The full parameter name: `prefix` + `/` + `name`, exactly one slash between them.
pub fn full_name(prefix: Option<&str>, name: &str) -> String {
    let name = name.trim_start_matches('/');
    match prefix.map(|p| p.trim_end_matches('/')) {
        Some(prefix) if !prefix.is_empty() => {
            let prefix = if prefix.starts_with('/') {
                prefix.to_owned()
            } else {
                format!("/{prefix}")
            };
            format!("{prefix}/{name}")
        }
        _ => format!("/{name}"),
    }
}

/// Whether a parameter name is in the public `/aws/` namespace.
pub fn is_public_namespace(name: &str) -> bool {
    name.starts_with("/aws/")
}

#[cfg(test)]
mod tests {
    use super::{Template, Vars, applicable, full_name, render, variables};

    #[test]
    fn renders_the_reference_defaults() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ssm-defaults.toml"),
        )
        .unwrap();
        let file: super::TemplateFile = toml::from_str(&text).unwrap();
        let vars: Vars<'_> = [
            ("variant", "aws-k8s-1.28"),
            ("arch", "x86_64"),
            ("image_version", "1.15.0-abc12345"),
            ("image_id", "ami-0123"),
            ("image_name", "br"),
            ("region", "us-west-2"),
        ]
        .into_iter()
        .collect();
        let rendered: Vec<(String, String)> = file
            .parameter
            .iter()
            .map(|t| {
                (
                    full_name(Some("/test/prefix/"), &render(&t.name, &vars).unwrap()),
                    render(&t.value, &vars).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rendered,
            [
                (
                    "/test/prefix/aws-k8s-1.28/x86_64/1.15.0-abc12345/image_id".to_owned(),
                    "ami-0123".to_owned()
                ),
                (
                    "/test/prefix/aws-k8s-1.28/x86_64/1.15.0-abc12345/image_version".to_owned(),
                    "1.15.0-abc12345".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn escapes_unknown_variables_and_filters() {
        let vars: Vars<'_> = [("a", "1")].into_iter().collect();
        assert_eq!(render("x{{y}}{a}\\{z}", &vars).unwrap(), "x{y}1{z}");
        assert!(render("{b}", &vars).is_err());
        assert!(render("{a", &vars).is_err());
        assert_eq!(variables("{a}/{ b }").unwrap(), ["a", "b"]);
        assert_eq!(full_name(None, "x/y"), "/x/y");
        assert_eq!(full_name(Some("p"), "/x"), "/p/x");
        assert_eq!(full_name(Some("/p//"), "//x"), "/p/x");
        let t = |variant: &[&str], arch: &[&str]| Template {
            name: "n".into(),
            value: "v".into(),
            variant: variant.iter().map(|s| s.to_string()).collect(),
            arch: arch.iter().map(|s| s.to_string()).collect(),
        };
        let templates = [
            t(&[], &[]),
            t(&["aws-ecs-1"], &[]),
            t(&[], &["aarch64"]),
            t(&[], &["arm64"]),
        ];
        assert_eq!(applicable(&templates, "aws-ecs-1", "arm64").len(), 3);
        assert_eq!(applicable(&templates, "aws-k8s", "x86_64").len(), 1);
    }
}
