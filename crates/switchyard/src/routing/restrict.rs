//! Restrictions a caller's key, team, organisation or customer put on deployments: allowed
//! regions, a maximum risk level and accepted data classifications. Every level applies, so
//! the merged restriction is the intersection of the lists and the lowest maximum. A deployment
//! that does not state an attribute never satisfies a restriction on it.

use crate::config::{Attributes, RiskLevel};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restrictions {
    /// `None`: any region. `Some([])`: the levels' lists have nothing in common.
    pub regions: Option<Vec<String>>,
    pub max_risk: Option<RiskLevel>,
    pub classifications: Option<Vec<String>>,
}

/// Which attribute kept a deployment out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    Region,
    Risk,
    Classification,
}

fn intersect(into: &mut Option<Vec<String>>, list: &[String]) {
    if list.is_empty() {
        return;
    }
    *into = Some(match into.take() {
        None => list.to_vec(),
        Some(have) => have.into_iter().filter(|x| list.contains(x)).collect(),
    });
}

impl Restrictions {
    /// Adds one level's restrictions.
    pub fn add(&mut self, regions: &[String], max_risk: Option<RiskLevel>, classes: &[String]) {
        intersect(&mut self.regions, regions);
        intersect(&mut self.classifications, classes);
        if let Some(r) = max_risk {
            self.max_risk = Some(self.max_risk.map_or(r, |m| m.min(r)));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_none() && self.max_risk.is_none() && self.classifications.is_none()
    }

    /// Why `a` is not allowed, or `None` when it is.
    pub fn rejects(&self, a: &Attributes) -> Option<(Attribute, String)> {
        if let Some(allowed) = &self.regions
            && !a.region.as_ref().is_some_and(|r| allowed.contains(r))
        {
            return Some((
                Attribute::Region,
                format!(
                    "region {} is not allowed (allowed: {})",
                    a.region.as_deref().unwrap_or("unknown"),
                    list(allowed)
                ),
            ));
        }
        if let Some(max) = self.max_risk
            && a.risk_level.is_none_or(|r| r > max)
        {
            return Some((
                Attribute::Risk,
                format!(
                    "risk level {} is above the maximum {}",
                    a.risk_level.map_or("unknown", RiskLevel::as_str),
                    max.as_str()
                ),
            ));
        }
        if let Some(allowed) = &self.classifications
            && !a
                .data_classification
                .as_ref()
                .is_some_and(|c| allowed.contains(c))
        {
            return Some((
                Attribute::Classification,
                format!(
                    "data classification {} is not allowed (allowed: {})",
                    a.data_classification.as_deref().unwrap_or("unknown"),
                    list(allowed)
                ),
            ));
        }
        None
    }

    /// One sentence for a refusal: why no deployment of `alias` (given as `(id, attributes)`)
    /// may serve this caller.
    pub fn explain<'a>(
        &self,
        alias: &str,
        deployments: impl Iterator<Item = (&'a str, &'a Attributes)>,
    ) -> String {
        let rejected: Vec<(&str, &Attributes, Attribute, String)> = deployments
            .filter_map(|(id, a)| self.rejects(a).map(|(what, why)| (id, a, what, why)))
            .collect();
        let same = rejected.first().map(|r| r.2);
        if let Some(what) = same
            && rejected.iter().all(|r| r.2 == what)
        {
            let available = |f: &dyn Fn(&Attributes) -> Option<String>| {
                let mut v: Vec<String> = rejected
                    .iter()
                    .map(|r| f(r.1).unwrap_or_else(|| "unknown".into()))
                    .collect();
                v.sort();
                v.dedup();
                v.join(", ")
            };
            return match what {
                Attribute::Region => format!(
                    "No deployment of '{alias}' is in an allowed region (allowed: {}; available: {}).",
                    list(self.regions.as_deref().unwrap_or_default()),
                    available(&|a| a.region.clone())
                ),
                Attribute::Risk => format!(
                    "No deployment of '{alias}' is within the allowed risk level (maximum: {}; available: {}).",
                    self.max_risk.map_or("none", RiskLevel::as_str),
                    available(&|a| a.risk_level.map(|r| r.as_str().to_owned()))
                ),
                Attribute::Classification => format!(
                    "No deployment of '{alias}' has an allowed data classification (allowed: {}; available: {}).",
                    list(self.classifications.as_deref().unwrap_or_default()),
                    available(&|a| a.data_classification.clone())
                ),
            };
        }
        let reasons: Vec<String> = rejected
            .iter()
            .map(|(id, _, _, why)| format!("{id}: {why}"))
            .collect();
        format!(
            "No deployment of '{alias}' is allowed for this caller ({}).",
            reasons.join("; ")
        )
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(region: &str, risk: RiskLevel, class: &str) -> Attributes {
        Attributes {
            region: Some(region.into()),
            risk_level: Some(risk),
            data_classification: Some(class.into()),
            ..Attributes::default()
        }
    }

    #[test]
    fn every_level_applies() {
        let mut r = Restrictions::default();
        r.add(&["eu".into(), "us".into()], Some(RiskLevel::High), &[]);
        r.add(
            &["eu".into()],
            Some(RiskLevel::Medium),
            &["internal".into()],
        );
        assert_eq!(r.regions, Some(vec!["eu".to_owned()]));
        assert_eq!(r.max_risk, Some(RiskLevel::Medium));
        assert!(
            r.rejects(&attrs("eu", RiskLevel::Low, "internal"))
                .is_none()
        );
        assert_eq!(
            r.rejects(&attrs("us", RiskLevel::Low, "internal"))
                .unwrap()
                .0,
            Attribute::Region
        );
        assert_eq!(
            r.rejects(&attrs("eu", RiskLevel::High, "internal"))
                .unwrap()
                .0,
            Attribute::Risk
        );
        assert_eq!(
            r.rejects(&attrs("eu", RiskLevel::Low, "public")).unwrap().0,
            Attribute::Classification
        );
        assert!(
            r.rejects(&Attributes::default()).is_some(),
            "unstated attributes never pass"
        );
        r.add(&["us".into()], None, &[]);
        assert_eq!(r.regions, Some(vec![]), "nothing in common");
    }

    #[test]
    fn explains_a_refusal() {
        let mut r = Restrictions::default();
        r.add(&["eu".into()], None, &[]);
        let us = attrs("us", RiskLevel::Low, "public");
        let asia = attrs("ap", RiskLevel::Low, "public");
        assert_eq!(
            r.explain("gpt", [("a/m", &us), ("b/m", &asia)].into_iter()),
            "No deployment of 'gpt' is in an allowed region (allowed: eu; available: ap, us)."
        );
    }
}
