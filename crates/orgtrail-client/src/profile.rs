//! Named profiles: where a reader's collector is and which certificate to use, so that
//! `orgtrail lookup --event-name StartInstances` needs no TLS flags.
//!
//! The file is `$ORGTRAIL_CONFIG`, else `$XDG_CONFIG_HOME/orgtrail/config.toml`, else
//! `$HOME/.config/orgtrail/config.toml`:
//!
//! ```toml
//! default = "prod"              # the profile used when none is named
//!
//! [profiles.prod]
//! collector = "https://collector.example.org:4317"
//! ca = "/home/me/orgtrail/ca.pem"       # relative paths are read from this file's directory
//! cert = "/home/me/orgtrail/auditor.pem"
//! key = "/home/me/orgtrail/auditor.key"
//! server_name = "collector"             # optional: the name in the collector's certificate
//! ```
//!
//! Each setting comes from the first of: the command's flag (`--profile`, `--collector`,
//! `--ca`, `--cert`, `--key`, `--server-name`), the environment (`ORGTRAIL_PROFILE`,
//! `ORGTRAIL_COLLECTOR`, `ORGTRAIL_CA`, `ORGTRAIL_CERT`, `ORGTRAIL_KEY`,
//! `ORGTRAIL_SERVER_NAME`), the profile. The server name goes with the collector URL: a
//! profile's server name is used only with that profile's collector. A profile that is named
//! but does not exist, and a certificate, key or CA file that does not exist, are refused with
//! what named them: nothing falls back to another profile, and there is no plaintext path.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Remote;

/// The profile file's path, instead of the default one.
pub const ENV_CONFIG: &str = "ORGTRAIL_CONFIG";
/// The profile to use, instead of the file's default.
pub const ENV_PROFILE: &str = "ORGTRAIL_PROFILE";
pub const ENV_COLLECTOR: &str = "ORGTRAIL_COLLECTOR";
pub const ENV_CA: &str = "ORGTRAIL_CA";
pub const ENV_CERT: &str = "ORGTRAIL_CERT";
pub const ENV_KEY: &str = "ORGTRAIL_KEY";
pub const ENV_SERVER_NAME: &str = "ORGTRAIL_SERVER_NAME";

/// The profile file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The profile used when neither `--profile` nor `ORGTRAIL_PROFILE` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// The profiles, by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One named profile. Every field may be left out and given by a flag or the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The collector's URL, `https://HOST:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,
    /// The organization CA (PEM) that signed the collector's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// The reader's certificate (PEM, role auditor or admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The name in the collector's certificate, when it differs from the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// What went wrong with profiles.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot tell where the profile file is: set ORGTRAIL_CONFIG, XDG_CONFIG_HOME or HOME")]
    NoHome,
    #[error("cannot read the profile file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the profile file {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("cannot write the profile file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no profile {name:?} (named by {named_by}) in {}: {known}", path.display())]
    NoSuchProfile {
        name: String,
        named_by: String,
        path: PathBuf,
        /// The profiles there are, or that the file does not exist.
        known: String,
    },
    #[error(
        "the collector {collector} (from {collector_from}) needs {what}: give {flag} F, set {env}, or add `{field} = \"F\"` to {profile}",
        what = setting.what, flag = setting.flag, env = setting.env, field = setting.field
    )]
    Incomplete {
        collector: String,
        collector_from: String,
        setting: &'static Setting,
        profile: String,
    },
    #[error("the {what} {} (from {from}) does not exist", path.display())]
    MissingFile {
        what: &'static str,
        path: PathBuf,
        from: String,
    },
    #[error("{name:?} is not a profile name: use letters, digits, '-', '_' and '.' (at most 64)")]
    BadName { name: String },
    #[error("{path}: {problem}", path = path.display())]
    BadPath { path: PathBuf, problem: String },
}

/// A file setting: what it is, and its flag, variable and profile field.
#[derive(Debug)]
pub struct Setting {
    pub what: &'static str,
    pub flag: &'static str,
    pub env: &'static str,
    pub field: &'static str,
}

const CA: Setting = Setting {
    what: "CA certificate",
    flag: "--ca",
    env: ENV_CA,
    field: "ca",
};
const CERT: Setting = Setting {
    what: "certificate",
    flag: "--cert",
    env: ENV_CERT,
    field: "cert",
};
const KEY: Setting = Setting {
    what: "private key",
    flag: "--key",
    env: ENV_KEY,
    field: "key",
};

/// The profile file as read (empty when it does not exist yet).
#[derive(Debug, Clone)]
pub struct Profiles {
    /// Where it is (or will be written).
    pub path: PathBuf,
    /// Whether the file exists.
    pub exists: bool,
    /// Its contents, relative paths resolved against the file's directory.
    pub file: ConfigFile,
}

/// The profile file's path: `ORGTRAIL_CONFIG`, else `$XDG_CONFIG_HOME/orgtrail/config.toml`,
/// else `$HOME/.config/orgtrail/config.toml`. `env` reads an environment variable (empty
/// values count as unset).
pub fn config_path(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, ProfileError> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(p) = get(ENV_CONFIG) {
        return Ok(PathBuf::from(p));
    }
    // The XDG base directory spec ignores a relative XDG_CONFIG_HOME.
    if let Some(x) = get("XDG_CONFIG_HOME").map(PathBuf::from)
        && x.is_absolute()
    {
        return Ok(x.join("orgtrail/config.toml"));
    }
    let home = get("HOME")
        .map(PathBuf::from)
        .or_else(std::env::home_dir)
        .ok_or(ProfileError::NoHome)?;
    Ok(home.join(".config/orgtrail/config.toml"))
}

/// The process's environment, for [`config_path`] and [`Layer::from_env`].
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

fn check_name(name: &str) -> Result<(), ProfileError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ProfileError::BadName { name: name.into() })
    }
}

impl Profiles {
    /// Reads the file at `path`; a file that does not exist is an empty one.
    pub fn load(path: &Path) -> Result<Profiles, ProfileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Profiles {
                    path: path.to_owned(),
                    exists: false,
                    file: ConfigFile::default(),
                });
            }
            Err(source) => {
                return Err(ProfileError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut file: ConfigFile = toml::from_str(&text).map_err(|source| ProfileError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in file.profiles.values_mut() {
            for f in [&mut p.ca, &mut p.cert, &mut p.key].into_iter().flatten() {
                if f.is_relative() {
                    *f = dir.join(&*f);
                }
            }
        }
        Ok(Profiles {
            path: path.to_owned(),
            exists: true,
            file,
        })
    }

    /// Adds (or replaces) the profile `name`, its paths made absolute. It becomes the default
    /// when `make_default`, or when there is no default yet. Not written until [`save`].
    ///
    /// [`save`]: Profiles::save
    pub fn add(
        &mut self,
        name: &str,
        mut profile: Profile,
        make_default: bool,
    ) -> Result<(), ProfileError> {
        check_name(name)?;
        for f in [&mut profile.ca, &mut profile.cert, &mut profile.key]
            .into_iter()
            .flatten()
        {
            *f = std::path::absolute(&*f).map_err(|e| ProfileError::BadPath {
                path: f.clone(),
                problem: e.to_string(),
            })?;
        }
        self.file.profiles.insert(name.to_owned(), profile);
        if make_default || self.file.default.is_none() {
            self.file.default = Some(name.to_owned());
        }
        Ok(())
    }

    /// Removes the profile `name` (and the default, when it was the default). False when
    /// there was no such profile.
    pub fn remove(&mut self, name: &str) -> bool {
        let found = self.file.profiles.remove(name).is_some();
        if self.file.default.as_deref() == Some(name) {
            self.file.default = None;
        }
        found
    }

    /// Writes the file (its directory created when missing), readable by its owner only,
    /// replacing the old one in one step.
    pub fn save(&self) -> Result<(), ProfileError> {
        let err = |source| ProfileError::Write {
            path: self.path.clone(),
            source,
        };
        let text = toml::to_string_pretty(&self.file).map_err(|e| err(std::io::Error::other(e)))?;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(err)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config.toml".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = (|| {
            let mut f = options.open(&tmp)?;
            f.write_all(
                b"# orgtrail profiles: `orgtrail profile add|list|remove`, see `orgtrail profile --help`.\n",
            )?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(err)
    }

    fn describe_profile(&self, name: &str) -> String {
        format!("profile {name:?} in {}", self.path.display())
    }
}

/// Settings from one layer: the command's flags, or the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    pub profile: Option<String>,
    pub collector: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
}

impl Layer {
    /// The `ORGTRAIL_*` variables (empty values count as unset).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Layer {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        Layer {
            profile: get(ENV_PROFILE),
            collector: get(ENV_COLLECTOR),
            ca: get(ENV_CA).map(PathBuf::from),
            cert: get(ENV_CERT).map(PathBuf::from),
            key: get(ENV_KEY).map(PathBuf::from),
            server_name: get(ENV_SERVER_NAME),
        }
    }
}

/// Where a resolved setting came from, for error messages.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Flag(&'static str),
    Env(&'static str),
    Profile(&'a str),
}

/// The collector to ask, as the flags, the environment and the profile file say; `None`
/// when none of them names a collector. `profile` is the profile used, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub remote: Remote,
    pub profile: Option<String>,
}

/// Resolves the collector and certificate: flags, then environment, then the profile (named
/// by `--profile`, `ORGTRAIL_PROFILE` or the file's default). See the module doc.
pub fn resolve(
    flags: &Layer,
    env: &Layer,
    profiles: &Profiles,
) -> Result<Option<Resolved>, ProfileError> {
    let named = match (&flags.profile, &env.profile, &profiles.file.default) {
        (Some(n), _, _) => Some((n.as_str(), "--profile".to_string())),
        (None, Some(n), _) => Some((n.as_str(), ENV_PROFILE.to_string())),
        (None, None, Some(n)) => Some((
            n.as_str(),
            format!("`default` in {}", profiles.path.display()),
        )),
        (None, None, None) => None,
    };
    let profile = match named {
        None => None,
        Some((name, named_by)) => match profiles.file.profiles.get(name) {
            Some(p) => Some((name, p)),
            None => {
                let known: Vec<&str> = profiles.file.profiles.keys().map(String::as_str).collect();
                return Err(ProfileError::NoSuchProfile {
                    name: name.to_owned(),
                    named_by,
                    path: profiles.path.clone(),
                    known: if !known.is_empty() {
                        format!("its profiles are {}", known.join(", "))
                    } else if !profiles.exists {
                        "the file does not exist (create it with `orgtrail profile add`)".into()
                    } else {
                        "it has no profiles".into()
                    },
                });
            }
        },
    };
    let describe = |f: Source<'_>| match f {
        Source::Flag(flag) => flag.to_string(),
        Source::Env(var) => var.to_string(),
        Source::Profile(name) => profiles.describe_profile(name),
    };
    let pick = |flag: (&Option<String>, &'static str),
                var: (&Option<String>, &'static str),
                from_profile: Option<&String>|
     -> Option<(String, Source<'_>)> {
        flag.0
            .clone()
            .map(|v| (v, Source::Flag(flag.1)))
            .or_else(|| var.0.clone().map(|v| (v, Source::Env(var.1))))
            .or_else(|| {
                profile
                    .and_then(|(name, _)| from_profile.map(|v| (v.clone(), Source::Profile(name))))
            })
    };
    let p = profile.map(|(_, p)| p);
    let Some((collector, collector_from)) = pick(
        (&flags.collector, "--collector"),
        (&env.collector, ENV_COLLECTOR),
        p.and_then(|p| p.collector.as_ref()),
    ) else {
        return Ok(None);
    };
    // The server name goes with the collector URL.
    let server_name = flags
        .server_name
        .clone()
        .or_else(|| env.server_name.clone())
        .or_else(|| match collector_from {
            Source::Profile(_) => p.and_then(|p| p.server_name.clone()),
            _ => None,
        });
    let file = |setting: &'static Setting,
                f: &Option<PathBuf>,
                e: &Option<PathBuf>,
                pf: Option<&PathBuf>|
     -> Result<PathBuf, ProfileError> {
        let found = f
            .clone()
            .map(|v| (v, Source::Flag(setting.flag)))
            .or_else(|| e.clone().map(|v| (v, Source::Env(setting.env))))
            .or_else(|| {
                profile.and_then(|(name, _)| pf.map(|v| (v.clone(), Source::Profile(name))))
            });
        let Some((path, from)) = found else {
            return Err(ProfileError::Incomplete {
                collector: collector.clone(),
                collector_from: describe(collector_from),
                setting,
                profile: match profile {
                    Some((name, _)) => profiles.describe_profile(name),
                    None => format!("a profile in {}", profiles.path.display()),
                },
            });
        };
        if !path.exists() {
            return Err(ProfileError::MissingFile {
                what: setting.what,
                path,
                from: describe(from),
            });
        }
        Ok(path)
    };
    let ca = file(&CA, &flags.ca, &env.ca, p.and_then(|p| p.ca.as_ref()))?;
    let cert = file(
        &CERT,
        &flags.cert,
        &env.cert,
        p.and_then(|p| p.cert.as_ref()),
    )?;
    let key = file(&KEY, &flags.key, &env.key, p.and_then(|p| p.key.as_ref()))?;
    Ok(Some(Resolved {
        remote: Remote {
            collector,
            ca,
            cert,
            key,
            server_name,
        },
        profile: profile.map(|(n, _)| n.to_owned()),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_file_is_found_by_orgtrail_config_then_xdg_then_home() {
        let p = config_path(&env_of(&[
            ("ORGTRAIL_CONFIG", "/a/b.toml"),
            ("XDG_CONFIG_HOME", "/x"),
            ("HOME", "/h"),
        ]))
        .unwrap();
        assert_eq!(p, PathBuf::from("/a/b.toml"));
        let p = config_path(&env_of(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")])).unwrap();
        assert_eq!(p, PathBuf::from("/x/orgtrail/config.toml"));
        // A relative XDG_CONFIG_HOME is ignored, as the spec says; empty values are unset.
        let p = config_path(&env_of(&[
            ("ORGTRAIL_CONFIG", ""),
            ("XDG_CONFIG_HOME", "rel"),
            ("HOME", "/h"),
        ]))
        .unwrap();
        assert_eq!(p, PathBuf::from("/h/.config/orgtrail/config.toml"));
    }

    #[test]
    fn relative_paths_are_read_from_the_files_directory_and_unknown_keys_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "default = \"a\"\n[profiles.a]\ncollector = \"https://c:1\"\nca = \"ca.pem\"\ncert = \"/abs/r.pem\"\n",
        )
        .unwrap();
        let p = Profiles::load(&path).unwrap();
        let a = &p.file.profiles["a"];
        assert_eq!(a.ca.as_deref(), Some(dir.path().join("ca.pem").as_path()));
        assert_eq!(a.cert.as_deref(), Some(Path::new("/abs/r.pem")));

        std::fs::write(&path, "[profiles.a]\ncolector = \"https://c:1\"\n").unwrap();
        let e = Profiles::load(&path).unwrap_err().to_string();
        assert!(e.contains("colector") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn a_named_profile_that_does_not_exist_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Profiles::load(&dir.path().join("config.toml")).unwrap();
        let e = resolve(
            &Layer::default(),
            &Layer {
                profile: Some("prod".into()),
                ..Layer::default()
            },
            &p,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("no profile \"prod\" (named by ORGTRAIL_PROFILE)"),
            "{e}"
        );
        assert!(e.contains("does not exist"), "{e}");

        p.add(
            "dev",
            Profile {
                collector: Some("https://dev:4317".into()),
                ..Profile::default()
            },
            false,
        )
        .unwrap();
        assert_eq!(
            p.file.default.as_deref(),
            Some("dev"),
            "the first is the default"
        );
        let e = resolve(
            &Layer {
                profile: Some("prod".into()),
                ..Layer::default()
            },
            &Layer::default(),
            &p,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("(named by --profile)") && e.contains("its profiles are dev"),
            "{e}"
        );
        // No profile, no collector: nothing to resolve.
        let none = Profiles::load(&dir.path().join("none.toml")).unwrap();
        assert_eq!(
            resolve(&Layer::default(), &Layer::default(), &none).unwrap(),
            None
        );
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["ca.pem", "p.pem", "p.key", "e.pem", "f.pem"] {
            std::fs::write(d.join(f), "x").unwrap();
        }
        let mut p = Profiles::load(&d.join("config.toml")).unwrap();
        p.add(
            "prod",
            Profile {
                collector: Some("https://prod:4317".into()),
                ca: Some(d.join("ca.pem")),
                cert: Some(d.join("p.pem")),
                key: Some(d.join("p.key")),
                server_name: Some("collector".into()),
            },
            true,
        )
        .unwrap();
        let r = resolve(&Layer::default(), &Layer::default(), &p)
            .unwrap()
            .unwrap();
        assert_eq!(r.profile.as_deref(), Some("prod"));
        assert_eq!(r.remote.server_name.as_deref(), Some("collector"));
        let env = Layer {
            cert: Some(d.join("e.pem")),
            collector: Some("https://env:1".into()),
            ..Layer::default()
        };
        let r = resolve(&Layer::default(), &env, &p).unwrap().unwrap();
        assert_eq!(r.remote.cert, d.join("e.pem"));
        assert_eq!(r.remote.key, d.join("p.key"));
        assert_eq!(r.remote.collector, "https://env:1");
        assert_eq!(
            r.remote.server_name, None,
            "the profile's name is for its collector"
        );
        let flags = Layer {
            cert: Some(d.join("f.pem")),
            ..Layer::default()
        };
        let r = resolve(&flags, &env, &p).unwrap().unwrap();
        assert_eq!(r.remote.cert, d.join("f.pem"));

        // A certificate named by the profile that is not there.
        std::fs::remove_file(d.join("p.pem")).unwrap();
        let e = resolve(&Layer::default(), &Layer::default(), &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the certificate"), "{e}");
        assert!(e.contains("p.pem (from profile \"prod\" in"), "{e}");
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn saved_files_are_private_and_keep_other_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/dir/config.toml");
        let mut p = Profiles::load(&path).unwrap();
        p.add("a", Profile::default(), false).unwrap();
        p.save().unwrap();
        let mut p = Profiles::load(&path).unwrap();
        p.add("b", Profile::default(), false).unwrap();
        p.save().unwrap();
        let p = Profiles::load(&path).unwrap();
        assert_eq!(p.file.profiles.len(), 2);
        assert_eq!(p.file.default.as_deref(), Some("a"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            Profiles::load(&path)
                .unwrap()
                .clone()
                .add("no way", Profile::default(), false)
                .is_err()
        );
    }
}
