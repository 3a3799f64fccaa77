//! Retention: which image versions a repository keeps and which it deletes, and why. Pure:
//! the listing and the manifests' facts are read elsewhere and passed in.
//!
//! Kept: environment tags and `latest`, every tag that is not a commit tag, every commit
//! build of a component that fewer than N of its builds are provably newer than (ordered by
//! [`super::build_order`]: the commits' history first, then push and creation times),
//! every digest deployed somewhere, attestations, every child of a kept index, and
//! untagged versions younger than the limit. Anything the rules cannot see clearly (an
//! unreadable manifest, an index child missing from a full listing) refuses the whole
//! prune; a build that cannot be ordered, or an untagged version without a time, is kept:
//! fail closed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;

use super::build_order::{Build, History, Standing, short, standings};
use crate::oci::digest::Digest;

/// Most commit builds of one component that prune orders; past it the prune refuses rather
/// than guess. The ordering's time is quadratic: 10,000 builds took 2.8 s (release build),
/// so this many take about four times that.
pub const MAX_ORDERED_BUILDS: usize = 20_000;

/// How a version is deleted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum VersionId {
    /// A GitHub Packages version id (`DELETE .../versions/{id}`).
    Package(u64),
    /// A manifest deleted by digest through the registry API.
    Manifest,
}

/// One version of an image: a manifest digest and the tags pointing at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// How it is deleted.
    pub id: VersionId,
    /// The manifest digest.
    pub digest: Digest,
    /// Tags naming it.
    pub tags: Vec<String>,
    /// Its image's `created` (the config's, or the index's annotation), when read.
    pub created: Option<Timestamp>,
    /// When it was pushed, where the backend says (the Packages API's `created_at`).
    pub pushed: Option<Timestamp>,
}

impl Version {
    /// Its age's start for untagged retention: the push time, else the image's `created`.
    fn since(&self) -> Option<Timestamp> {
        self.pushed.or(self.created)
    }
}

/// A repository's versions, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Every version found.
    pub versions: Vec<Version>,
    /// True when untagged versions are listed too (GitHub Packages); then every child of a
    /// kept index must be in the listing. A registry's tag list shows only tagged ones.
    pub includes_untagged: bool,
}

/// What a manifest says about retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestFacts {
    /// A single-platform image or artifact manifest.
    Image {
        /// True for attestations and signatures (a `subject`, an in-toto layer, ...).
        attestation: bool,
    },
    /// An index (multi-platform image list).
    Index {
        /// True when the index itself is an attestation (has a `subject`).
        attestation: bool,
        /// Its children.
        children: Vec<Child>,
    },
    /// A media type the rules do not know; refuses the prune.
    Unknown {
        /// The media type seen.
        media_type: String,
    },
}

/// One entry of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// The child's digest.
    pub digest: Digest,
    /// True when the index marks it as an attestation manifest.
    pub attestation: bool,
}

/// How commit tags look for one component in this repository: `prefix` + hex sha.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitTagRule {
    /// The component.
    pub component: String,
    /// `backend-` or `sha-`.
    pub prefix: String,
    /// 40 or 7.
    pub sha_len: usize,
}

impl CommitTagRule {
    fn matches(&self, tag: &str) -> bool {
        self.sha(tag).is_some()
    }

    /// The commit sha `tag` carries (lowercase), when it is one of these commit tags.
    pub fn sha(&self, tag: &str) -> Option<String> {
        tag.strip_prefix(&self.prefix)
            .filter(|rest| {
                rest.len() == self.sha_len && rest.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .map(str::to_ascii_lowercase)
    }
}

/// The retention policy for one repository, at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Commit tag shapes of the components stored here.
    pub commit_tags: Vec<CommitTagRule>,
    /// Tags always kept: environment tags and `latest`.
    pub protected_tags: BTreeSet<String>,
    /// Commit builds kept per component: one goes only when this many are provably newer.
    pub keep_commit_tags: u32,
    /// Untagged versions older than this go.
    pub delete_untagged_after: Duration,
    /// Now, for ages.
    pub now: Timestamp,
    /// Digests deployed in some environment.
    pub deployed: BTreeSet<Digest>,
}

/// Why a prune refuses to delete anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A listed version's manifest could not be read.
    #[error("the manifest of {digest} was not read; nothing is deleted")]
    MissingFacts {
        /// The digest.
        digest: Digest,
    },
    /// A manifest of a type the rules do not understand.
    #[error(
        "{digest} has media type {media_type}, which prune does not understand; nothing is deleted"
    )]
    UnknownManifest {
        /// The digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// A kept index names a child the full listing does not have.
    #[error(
        "kept index {index} has child {child}, which is not in the listing; nothing is deleted"
    )]
    UnknownChild {
        /// The index.
        index: Digest,
        /// The child.
        child: Digest,
    },
    /// More commit builds of one component than prune orders.
    #[error(
        "component `{component}` has {count} commit builds, more than the {MAX_ORDERED_BUILDS} prune orders; nothing is deleted"
    )]
    TooManyBuilds {
        /// The component.
        component: String,
        /// How many.
        count: usize,
    },
}

/// The decision for one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The version.
    pub version: Version,
    /// Whether it is deleted.
    pub delete: bool,
    /// Why, in words.
    pub reason: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.delete { "delete" } else { "keep" };
        let tags = if self.version.tags.is_empty() {
            "untagged".to_owned()
        } else {
            self.version.tags.join(", ")
        };
        // Tags come from the registry: one escaped line, whatever they hold.
        write!(
            f,
            "{verb} {} ({}): {}",
            self.version.digest,
            crate::output::escape(&tags),
            crate::output::escape(&self.reason)
        )
    }
}

/// Signature and attestation tags of the cosign convention: `sha256-<hex>.sig|.att|.sbom`.
fn is_cosign_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-").is_some_and(|rest| {
        [".sig", ".att", ".sbom"]
            .iter()
            .any(|suffix| rest.strip_suffix(suffix).is_some_and(|hex| hex.len() == 64))
    })
}

/// A duration in whole days, hours or seconds (rounded down), for reasons people read.
fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    match (secs / 86_400, secs / 3600) {
        (0, 0) => format!("{secs}s"),
        (0, hours) => format!("{hours}h"),
        (days, _) => format!("{days}d"),
    }
}

/// Decides every version of `listing`. `facts` must hold every listed digest's manifest;
/// `history` orders the commits the tags name.
pub fn decide(
    listing: &Listing,
    facts: &BTreeMap<Digest, ManifestFacts>,
    rules: &Rules,
    history: &History,
) -> Result<Vec<Verdict>, Refusal> {
    for version in &listing.versions {
        match facts.get(&version.digest) {
            None => {
                return Err(Refusal::MissingFacts {
                    digest: version.digest.clone(),
                });
            }
            Some(ManifestFacts::Unknown { media_type }) => {
                return Err(Refusal::UnknownManifest {
                    digest: version.digest.clone(),
                    media_type: media_type.clone(),
                });
            }
            Some(_) => {}
        }
    }
    let order = order_commit_builds(listing, rules, history)?;
    let mut keep: Vec<Option<String>> = listing
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| first_keep_reason(i, v, &facts[&v.digest], rules, &order))
        .collect();

    // Children of kept indexes are kept, transitively (an index may hold indexes).
    let position: BTreeMap<&Digest, usize> = listing
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| (&v.digest, i))
        .collect();
    let mut queue: Vec<usize> = (0..listing.versions.len())
        .filter(|i| keep[*i].is_some())
        .collect();
    while let Some(i) = queue.pop() {
        let index = &listing.versions[i].digest;
        let Some(ManifestFacts::Index { children, .. }) = facts.get(index) else {
            continue;
        };
        for child in children {
            match position.get(&child.digest) {
                Some(&j) if keep[j].is_none() => {
                    let what = if child.attestation {
                        "attestation"
                    } else {
                        "child"
                    };
                    keep[j] = Some(format!("{what} of kept index {index}"));
                    queue.push(j);
                }
                Some(_) => {}
                None if listing.includes_untagged => {
                    return Err(Refusal::UnknownChild {
                        index: index.clone(),
                        child: child.digest.clone(),
                    });
                }
                None => {}
            }
        }
    }

    Ok(listing
        .versions
        .iter()
        .zip(keep)
        .enumerate()
        .map(|(i, (version, keep))| {
            let (delete, reason) = match keep {
                Some(reason) => (false, reason),
                None => (true, delete_reason(i, version, rules, &order)),
            };
            Verdict {
                version: version.clone(),
                delete,
                reason,
            }
        })
        .collect())
}

/// Where each commit build stands in its component, by component then version index.
struct Order<'h> {
    standings: BTreeMap<String, BTreeMap<usize, Standing>>,
    history: &'h History,
}

impl Order<'_> {
    /// The standing of version `index` under `rule`'s component.
    fn of(&self, rule: &CommitTagRule, index: usize) -> Option<&Standing> {
        self.standings.get(&rule.component)?.get(&index)
    }

    /// What reasons add for a build whose commit the history does not have: the first of
    /// its `rule` tags' shas that is missing.
    fn unknown_note(&self, standing: &Standing, version: &Version, rule: &CommitTagRule) -> String {
        if !standing.unknown_commit {
            return String::new();
        }
        let Some(sha) = version
            .tags
            .iter()
            .filter_map(|tag| rule.sha(tag))
            .find(|sha| self.history.find(sha).is_none())
        else {
            return String::new();
        };
        format!(
            "; commit {} is not in the {} (force-pushed away?), so only push and creation times can order it",
            short(&sha),
            self.history.described
        )
    }
}

/// Orders every component's commit builds (see [`super::build_order`]).
fn order_commit_builds<'h>(
    listing: &Listing,
    rules: &Rules,
    history: &'h History,
) -> Result<Order<'h>, Refusal> {
    let mut result = BTreeMap::new();
    for rule in &rules.commit_tags {
        let mut indexes = Vec::new();
        let mut builds = Vec::new();
        for (i, version) in listing.versions.iter().enumerate() {
            let tags: Vec<&String> = version.tags.iter().filter(|t| rule.matches(t)).collect();
            let Some(first) = tags.first() else {
                continue;
            };
            indexes.push(i);
            builds.push(Build {
                tag: (*first).clone(),
                shas: tags.iter().filter_map(|t| rule.sha(t)).collect(),
                pushed: version.pushed,
                created: version.created,
            });
        }
        if builds.len() > MAX_ORDERED_BUILDS {
            return Err(Refusal::TooManyBuilds {
                component: rule.component.clone(),
                count: builds.len(),
            });
        }
        let standings = standings(history, &builds);
        result.insert(
            rule.component.clone(),
            indexes.into_iter().zip(standings).collect(),
        );
    }
    Ok(Order {
        standings: result,
        history,
    })
}

fn first_keep_reason(
    index: usize,
    version: &Version,
    facts: &ManifestFacts,
    rules: &Rules,
    order: &Order,
) -> Option<String> {
    if rules.deployed.contains(&version.digest) {
        return Some("deployed in an environment".to_owned());
    }
    if let Some(tag) = version
        .tags
        .iter()
        .find(|t| rules.protected_tags.contains(*t))
    {
        return Some(format!("tag `{tag}` is always kept"));
    }
    let attestation = matches!(
        facts,
        ManifestFacts::Image { attestation: true }
            | ManifestFacts::Index {
                attestation: true,
                ..
            }
    );
    if attestation || version.tags.iter().any(|t| is_cosign_tag(t)) {
        return Some("attestations are never deleted".to_owned());
    }
    let keep = rules.keep_commit_tags as usize;
    for tag in &version.tags {
        let Some(rule) = rules.commit_tags.iter().find(|r| r.matches(tag)) else {
            return Some(format!("tag `{tag}` is not a commit tag"));
        };
        let Some(standing) = order.of(rule, index) else {
            continue;
        };
        let component = &rule.component;
        let note = order.unknown_note(standing, version, rule);
        if standing.contradicted {
            return Some(format!(
                "the evidence ordering `{tag}` among the `{component}` builds contradicts itself; kept{note}"
            ));
        }
        if standing.newer < keep {
            let mut reason = format!(
                "`{tag}` is among the newest {keep} `{component}` commit builds: {} provably newer",
                standing.newer
            );
            if let Some(example) = &standing.example {
                reason.push_str(&format!(" ({example})"));
            }
            if let (true, Some(why)) = (standing.unordered > 0, standing.why) {
                reason.push_str(&format!(
                    "; {} not ordered against it ({why}); kept",
                    standing.unordered
                ));
            }
            reason.push_str(&note);
            return Some(reason);
        }
    }
    if version.tags.is_empty() {
        let limit = rules.delete_untagged_after;
        return match version.since() {
            None => Some("untagged with no creation time".to_owned()),
            Some(created) if age(rules.now, created) <= limit => {
                Some(format!("untagged, younger than {}", human(limit)))
            }
            Some(_) => None,
        };
    }
    None
}

fn age(now: Timestamp, created: Timestamp) -> Duration {
    let seconds = now.as_second().saturating_sub(created.as_second());
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

fn delete_reason(index: usize, version: &Version, rules: &Rules, order: &Order) -> String {
    if version.tags.is_empty() {
        let age = version
            .since()
            .map(|c| age(rules.now, c))
            .unwrap_or_default();
        return format!(
            "untagged for {} (limit {})",
            human(age),
            human(rules.delete_untagged_after)
        );
    }
    // Every tag is a commit tag whose build has at least N provably newer ones.
    let found = version.tags.iter().find_map(|tag| {
        let rule = rules.commit_tags.iter().find(|r| r.matches(tag))?;
        Some((rule, order.of(rule, index)?))
    });
    let Some((rule, standing)) = found else {
        return "no rule keeps it".to_owned();
    };
    let builds = if standing.newer == 1 {
        "build is"
    } else {
        "builds are"
    };
    let mut reason = format!(
        "{} `{}` commit {builds} provably newer (keeping {})",
        standing.newer, rule.component, rules.keep_commit_tags
    );
    if let Some(example) = &standing.example {
        reason.push_str(&format!(": {example}"));
    }
    reason.push_str(&order.unknown_note(standing, version, rule));
    reason
}

/// Reads what retention needs from a manifest: its kind, its children, and whether it is an
/// attestation (a `subject`, an `artifactType`, or in-toto / cosign content).
pub fn manifest_facts(content_type: Option<&str>, body: &[u8]) -> ManifestFacts {
    use crate::oci::manifest::{ManifestKind, manifest_kind};
    let kind = match manifest_kind(content_type, body) {
        Ok(kind) => kind,
        Err(err) => {
            return ManifestFacts::Unknown {
                media_type: err.to_string(),
            };
        }
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return ManifestFacts::Unknown {
            media_type: "unparsable JSON".to_owned(),
        };
    };
    let is_attestation_type = |t: &str| t.contains("in-toto") || t.contains("cosign");
    let attestation = json.get("subject").is_some()
        || json.get("artifactType").is_some()
        || json["config"]["mediaType"]
            .as_str()
            .is_some_and(is_attestation_type)
        || json["layers"].as_array().is_some_and(|layers| {
            layers
                .iter()
                .any(|l| l["mediaType"].as_str().is_some_and(is_attestation_type))
        });
    match kind {
        ManifestKind::Image => ManifestFacts::Image { attestation },
        ManifestKind::Index => {
            let mut children = Vec::new();
            for entry in json["manifests"].as_array().into_iter().flatten() {
                let Some(Ok(digest)) = entry["digest"].as_str().map(str::parse::<Digest>) else {
                    return ManifestFacts::Unknown {
                        media_type: "index entry without a sha256 digest".to_owned(),
                    };
                };
                let attestation = entry["annotations"]["vnd.docker.reference.type"]
                    == "attestation-manifest"
                    || entry["artifactType"].as_str().is_some();
                children.push(Child {
                    digest,
                    attestation,
                });
            }
            ManifestFacts::Index {
                attestation,
                children,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    /// [`super::decide`] with no commit history: times alone order the builds.
    fn decide(
        listing: &Listing,
        facts: &BTreeMap<Digest, ManifestFacts>,
        rules: &Rules,
    ) -> Result<Vec<Verdict>, Refusal> {
        super::decide(listing, facts, rules, &History::new("no history"))
    }

    fn d(name: &str) -> Digest {
        Digest::of(name.as_bytes())
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn v(id: u64, name: &str, tags: &[&str], days_old: Option<i64>) -> Version {
        Version {
            id: VersionId::Package(id),
            digest: d(name),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            created: None,
            pushed: days_old.map(|n| Timestamp::from_second(now().as_second() - n * DAY).unwrap()),
        }
    }

    fn sha(n: u8) -> String {
        format!(
            "backend-{}",
            format!("{n:x}")
                .repeat(40)
                .chars()
                .take(40)
                .collect::<String>()
        )
    }

    fn rules(deployed: &[&str]) -> Rules {
        Rules {
            commit_tags: vec![
                CommitTagRule {
                    component: "backend".into(),
                    prefix: "backend-".into(),
                    sha_len: 40,
                },
                CommitTagRule {
                    component: "frontend".into(),
                    prefix: "frontend-".into(),
                    sha_len: 40,
                },
            ],
            protected_tags: ["backend-production", "backend-latest", "latest"]
                .map(String::from)
                .into(),
            keep_commit_tags: 2,
            delete_untagged_after: Duration::from_secs(7 * DAY as u64),
            now: now(),
            deployed: deployed.iter().map(|n| d(n)).collect(),
        }
    }

    fn image() -> ManifestFacts {
        ManifestFacts::Image { attestation: false }
    }

    fn facts(listing: &Listing) -> BTreeMap<Digest, ManifestFacts> {
        listing
            .versions
            .iter()
            .map(|v| (v.digest.clone(), image()))
            .collect()
    }

    fn deleted(verdicts: &[Verdict]) -> Vec<u64> {
        verdicts
            .iter()
            .filter(|v| v.delete)
            .map(|v| match v.version.id {
                VersionId::Package(id) => id,
                VersionId::Manifest => 0,
            })
            .collect()
    }

    fn listing(versions: Vec<Version>) -> Listing {
        Listing {
            versions,
            includes_untagged: true,
        }
    }

    #[test]
    fn keeps_the_newest_commit_tags_protected_deployed_and_young_untagged() {
        let sha1 = sha(1);
        let sha2 = sha(2);
        let sha3 = sha(3);
        let sha4 = sha(4);
        let sha5 = sha(5);
        let l = listing(vec![
            v(1, "a", &[&sha1], Some(50)),
            v(2, "b", &[&sha2, "backend-production"], Some(40)),
            v(3, "c", &[&sha3], Some(30)),
            v(4, "d", &[&sha4], Some(20)),
            v(5, "e", &[&sha5], Some(10)),
            v(6, "f", &[], Some(8)),
            v(7, "g", &[], Some(3)),
            v(8, "h", &["v1.2.3"], Some(400)),
            v(9, "i", &[], None),
        ]);
        let verdicts = decide(&l, &facts(&l), &rules(&["c"])).unwrap();
        assert_eq!(deleted(&verdicts), vec![1, 6]);
        let reason = |id: usize| verdicts[id - 1].reason.clone();
        assert!(reason(2).contains("backend-production"), "{}", reason(2));
        assert_eq!(reason(3), "deployed in an environment");
        assert!(reason(5).contains("newest 2"), "{}", reason(5));
        assert!(reason(6).starts_with("untagged for 8d"), "{}", reason(6));
        assert!(reason(7).contains("younger"), "{}", reason(7));
        assert!(reason(8).contains("not a commit tag"), "{}", reason(8));
        assert!(reason(9).contains("no creation time"), "{}", reason(9));
        assert!(verdicts[0].to_string().starts_with("delete sha256:"));
    }

    #[test]
    fn components_are_counted_separately() {
        let front = format!("frontend-{}", "f".repeat(40));
        let l = listing(vec![
            v(1, "a", &[&sha(1)], Some(5)),
            v(2, "b", &[&sha(2)], Some(4)),
            v(3, "c", &[&sha(3)], Some(3)),
            v(4, "x", &[&front], Some(100)),
        ]);
        assert_eq!(
            deleted(&decide(&l, &facts(&l), &rules(&[])).unwrap()),
            vec![1]
        );
    }

    #[test]
    fn a_build_without_times_is_kept_and_blocks_nothing_older() {
        let l = listing(vec![
            v(1, "a", &[&sha(1)], Some(50)),
            v(2, "b", &[&sha(2)], None),
            v(3, "c", &[&sha(3)], Some(3)),
            v(4, "d", &[&sha(4)], Some(1)),
        ]);
        let verdicts = decide(&l, &facts(&l), &rules(&[])).unwrap();
        assert_eq!(deleted(&verdicts), vec![1]);
        assert!(
            verdicts[1].reason.contains(
                "0 provably newer; 3 not ordered against it (no evidence both have); kept"
            ),
            "{}",
            verdicts[1].reason
        );
        assert!(
            verdicts[0]
                .reason
                .starts_with("2 `backend` commit builds are provably newer (keeping 2): `backend-"),
            "{}",
            verdicts[0].reason
        );
    }

    fn ledger(c: char) -> String {
        format!("backend-{}", c.to_string().repeat(40))
    }

    /// Builds of `tags`, every image created at the same instant (reproducible builds),
    /// pushed in listing order one minute apart when `pushed`.
    fn reproducible(tags: &[String], pushed: bool) -> Listing {
        let versions = tags
            .iter()
            .enumerate()
            .map(|(i, tag)| Version {
                id: VersionId::Package(i as u64 + 1),
                digest: d(tag),
                tags: vec![tag.clone()],
                created: Some(Timestamp::UNIX_EPOCH),
                pushed: pushed
                    .then(|| Timestamp::from_second(1_799_000_000 + 60 * i as i64).unwrap()),
            })
            .collect();
        listing(versions)
    }

    /// `main` with the commits `chars`, tip first.
    fn main_history(chars: &[char]) -> History {
        let mut history = History::new("git history of `main`");
        let chain: Vec<(String, Timestamp)> = chars
            .iter()
            .map(|c| (c.to_string().repeat(40), Timestamp::UNIX_EPOCH))
            .collect();
        history.add_chain("main", &chain);
        history
    }

    #[test]
    fn reproducible_builds_follow_the_commits_not_the_tag_names_or_push_order() {
        // Pushed fff, ccc, ddd (a rebuild of ccc last would be the same); main is c -> d -> f.
        let l = reproducible(&[ledger('f'), ledger('c'), ledger('d')], true);
        let mut r = rules(&[]);
        r.keep_commit_tags = 1;
        let verdicts = super::decide(&l, &facts(&l), &r, &main_history(&['f', 'd', 'c'])).unwrap();
        assert_eq!(deleted(&verdicts), vec![2, 3]);
        assert_eq!(
            verdicts[0].reason,
            format!(
                "`{}` is among the newest 1 `backend` commit builds: 0 provably newer",
                ledger('f')
            )
        );
        assert_eq!(
            verdicts[1].reason,
            "2 `backend` commit builds are provably newer (keeping 1): commit dddddddddddd… is 1 commit newer on `main` (git history)"
        );
        assert_eq!(
            verdicts[2].reason,
            "1 `backend` commit build is provably newer (keeping 1): commit ffffffffffff… is 1 commit newer on `main` (git history)"
        );
    }

    #[test]
    fn created_times_that_tie_keep_everything_and_say_so() {
        let l = reproducible(&[ledger('c'), ledger('d'), ledger('f')], false);
        let mut r = rules(&[]);
        r.keep_commit_tags = 1;
        let verdicts = decide(&l, &facts(&l), &r).unwrap();
        assert!(deleted(&verdicts).is_empty());
        for verdict in &verdicts {
            assert!(
                verdict.reason.contains(
                    "0 provably newer; 2 not ordered against it (created times tie); kept"
                ),
                "{}",
                verdict.reason
            );
        }
    }

    #[test]
    fn a_force_pushed_commit_is_ordered_by_its_push_time_and_says_so() {
        // 9 is not on main any more; it was pushed between the builds of c and f.
        let l = reproducible(&[ledger('c'), ledger('9'), ledger('f')], true);
        let mut r = rules(&[]);
        r.keep_commit_tags = 1;
        let verdicts = super::decide(&l, &facts(&l), &r, &main_history(&['f', 'c'])).unwrap();
        assert_eq!(deleted(&verdicts), vec![1, 2]);
        let reason = &verdicts[1].reason;
        assert!(
            reason.starts_with(
                "1 `backend` commit build is provably newer (keeping 1): `backend-ffff"
            ),
            "{reason}"
        );
        assert!(
            reason.contains("was pushed later, 2027-01-03 18:15:20Z (Packages API)"),
            "{reason}"
        );
        assert!(
            reason.ends_with("; commit 999999999999… is not in the git history of `main` (force-pushed away?), so only push and creation times can order it"),
            "{reason}"
        );
    }

    #[test]
    fn contradicting_evidence_keeps_the_builds_it_concerns() {
        // main: f, d, c (tip first). 8 and 9 are off the history; push times (listing
        // order) say d < 8 < 9 < c, against the chain's c < d. 7 was pushed before them all.
        let l = reproducible(
            &[
                ledger('7'),
                ledger('d'),
                ledger('8'),
                ledger('9'),
                ledger('c'),
            ],
            true,
        );
        let mut r = rules(&[]);
        r.keep_commit_tags = 1;
        let verdicts = super::decide(&l, &facts(&l), &r, &main_history(&['f', 'd', 'c'])).unwrap();
        assert_eq!(deleted(&verdicts), vec![1]);
        assert!(
            verdicts[4]
                .reason
                .starts_with("the evidence ordering `backend-cccc"),
            "{}",
            verdicts[4].reason
        );
        assert!(verdicts[4].reason.contains("contradicts itself; kept"));
    }

    #[test]
    fn too_many_builds_of_one_component_refuse_the_prune() {
        let versions = (0..=MAX_ORDERED_BUILDS as u64)
            .map(|n| Version {
                id: VersionId::Package(n),
                digest: d(&n.to_string()),
                tags: vec![format!("backend-{n:040x}")],
                created: None,
                pushed: None,
            })
            .collect();
        let l = listing(versions);
        let err = decide(&l, &facts(&l), &rules(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "component `backend` has 20001 commit builds, more than the 20000 prune orders; nothing is deleted"
        );
    }

    #[test]
    fn tags_and_reasons_print_as_one_escaped_line() {
        let l = listing(vec![v(1, "a", &["v1\n::error::x"], Some(1))]);
        let verdicts = decide(&l, &facts(&l), &rules(&[])).unwrap();
        let line = verdicts[0].to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains(r"(v1\n::error::x): tag `v1\n::error::x`"),
            "{line}"
        );
    }

    #[test]
    fn children_and_attestations_of_kept_indexes_stay() {
        let l = listing(vec![
            v(1, "index", &["latest"], Some(30)),
            v(2, "amd64", &[], Some(30)),
            v(3, "att", &[], Some(30)),
            v(4, "old-index", &[], Some(30)),
            v(5, "old-child", &[], Some(30)),
            v(6, "referrer", &[], Some(30)),
        ]);
        let mut f = facts(&l);
        f.insert(
            d("index"),
            ManifestFacts::Index {
                attestation: false,
                children: vec![
                    Child {
                        digest: d("amd64"),
                        attestation: false,
                    },
                    Child {
                        digest: d("att"),
                        attestation: true,
                    },
                ],
            },
        );
        f.insert(
            d("old-index"),
            ManifestFacts::Index {
                attestation: false,
                children: vec![Child {
                    digest: d("old-child"),
                    attestation: false,
                }],
            },
        );
        f.insert(d("referrer"), ManifestFacts::Image { attestation: true });
        let verdicts = decide(&l, &f, &rules(&[])).unwrap();
        assert_eq!(deleted(&verdicts), vec![4, 5]);
        assert!(verdicts[1].reason.starts_with("child of kept index"));
        assert!(verdicts[2].reason.starts_with("attestation of kept index"));
        assert_eq!(verdicts[5].reason, "attestations are never deleted");
    }

    #[test]
    fn nested_indexes_keep_their_grandchildren() {
        let l = listing(vec![
            v(1, "top", &["latest"], Some(30)),
            v(2, "mid", &[], Some(30)),
            v(3, "leaf", &[], Some(30)),
        ]);
        let mut f = facts(&l);
        let index = |child: &str| ManifestFacts::Index {
            attestation: false,
            children: vec![Child {
                digest: d(child),
                attestation: false,
            }],
        };
        f.insert(d("top"), index("mid"));
        f.insert(d("mid"), index("leaf"));
        assert!(deleted(&decide(&l, &f, &rules(&[])).unwrap()).is_empty());
    }

    #[test]
    fn fails_closed() {
        let l = listing(vec![
            v(1, "index", &["latest"], Some(1)),
            v(2, "old", &[], Some(30)),
        ]);
        let mut f = facts(&l);
        f.insert(
            d("index"),
            ManifestFacts::Index {
                attestation: false,
                children: vec![Child {
                    digest: d("elsewhere"),
                    attestation: false,
                }],
            },
        );
        assert!(matches!(
            decide(&l, &f, &rules(&[])),
            Err(Refusal::UnknownChild { .. })
        ));
        // A tag-only listing (registry API) cannot show children: not a refusal there.
        let tags_only = Listing {
            includes_untagged: false,
            ..l.clone()
        };
        assert!(decide(&tags_only, &f, &rules(&[])).is_ok());

        let mut f = facts(&l);
        f.insert(
            d("old"),
            ManifestFacts::Unknown {
                media_type: "application/x-new".into(),
            },
        );
        let err = decide(&l, &f, &rules(&[])).unwrap_err();
        assert!(err.to_string().contains("application/x-new"), "{err}");
        let mut f = facts(&l);
        f.remove(&d("old"));
        assert!(matches!(
            decide(&l, &f, &rules(&[])),
            Err(Refusal::MissingFacts { .. })
        ));
    }

    #[test]
    fn facts_from_manifests() {
        let child = d("amd64");
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": child.to_string(), "size": 1},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d("att").to_string(), "size": 1,
                 "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
            ],
        });
        let facts = manifest_facts(None, index.to_string().as_bytes());
        assert_eq!(
            facts,
            ManifestFacts::Index {
                attestation: false,
                children: vec![
                    Child {
                        digest: child,
                        attestation: false
                    },
                    Child {
                        digest: d("att"),
                        attestation: true
                    },
                ],
            }
        );
        let referrer = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": d("c").to_string(), "size": 2},
            "layers": [],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d("x").to_string(), "size": 1},
        });
        assert_eq!(
            manifest_facts(None, referrer.to_string().as_bytes()),
            ManifestFacts::Image { attestation: true }
        );
        assert!(matches!(
            manifest_facts(
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
                b"{}"
            ),
            ManifestFacts::Unknown { .. }
        ));
    }

    #[test]
    fn cosign_tags_are_attestations() {
        let sig = format!("sha256-{}.sig", "a".repeat(64));
        assert!(is_cosign_tag(&sig));
        assert!(!is_cosign_tag("sha256-abc.sig"));
        let l = listing(vec![v(1, "s", &[&sig], Some(500))]);
        assert!(deleted(&decide(&l, &facts(&l), &rules(&[])).unwrap()).is_empty());
    }
}
