//! The EC2 Query protocol's request: a form body of `Action`, `Version` and the action's
//! parameters, lists flattened as `SubnetId.1`, `Filter.1.Name`, `Filter.1.Value.1`,
//! `TagSpecification.1.Tag.1.Key` (numbered from 1, as botocore writes them).

use super::error::{ApiError, ApiResult};
use std::collections::BTreeMap;

/// The API version every answer is for (botocore's `ec2/2016-11-15` model).
pub const VERSION: &str = "2016-11-15";

#[derive(Debug, Clone, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
}

/// `Name=value` filter of a Describe call: any of `values` matches (`*` and `?` wildcards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

/// One of a security group rule's `IpPermissions`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpPermission {
    pub protocol: String,
    pub from_port: Option<i64>,
    pub to_port: Option<i64>,
    /// CIDR with its description.
    pub ip_ranges: Vec<(String, Option<String>)>,
    /// Group IDs (or names, from `GroupName`), with descriptions.
    pub groups: Vec<(String, Option<String>)>,
}

impl Params {
    /// Parses a form-encoded body. A parameter given twice is an error: AWS would take one
    /// of them silently, and which one is not something to leave to chance.
    pub fn parse(body: &[u8]) -> ApiResult<Params> {
        let mut map = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            // A list index that is not a number from 1 up would be skipped when the list is
            // read, and a Describe of `VpcId.99999999999999999999` would answer every VPC.
            if k.split('.').skip(1).any(|i| {
                i.bytes().all(|b| b.is_ascii_digit()) && !matches!(i.parse::<u32>(), Ok(1..))
            }) {
                return Err(ApiError::invalid(format!(
                    "The parameter {k} has an invalid list index: indexes are numbers from 1 to {}",
                    u32::MAX
                )));
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(ApiError::invalid(format!(
                    "The parameter {k} is given more than once"
                )));
            }
        }
        Ok(Params { map })
    }

    pub fn action(&self) -> ApiResult<&str> {
        self.get("Action")
            .ok_or_else(|| ApiError::missing("Action"))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }

    pub fn require(&self, k: &str) -> ApiResult<&str> {
        match self.get(k) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::missing(k)),
        }
    }

    pub fn bool(&self, k: &str) -> ApiResult<Option<bool>> {
        match self.get(k) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid(format!(
                "Value ({v}) for parameter {k} is invalid. Expected true or false"
            ))),
        }
    }

    pub fn int(&self, k: &str) -> ApiResult<Option<i64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::invalid(format!(
                    "Value ({v}) for parameter {k} is invalid. Expected an integer"
                ))
            }),
        }
    }

    pub fn dry_run(&self) -> ApiResult<bool> {
        Ok(self.bool("DryRun")?.unwrap_or(false))
    }

    /// The indexes `prefix.N...` uses, in order.
    fn indexes(&self, prefix: &str) -> Vec<u32> {
        let dotted = format!("{prefix}.");
        let mut v: Vec<u32> = self
            .map
            .range(dotted.clone()..)
            .take_while(|(k, _)| k.starts_with(&dotted))
            .filter_map(|(k, _)| k[dotted.len()..].split('.').next()?.parse().ok())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// `prefix.1`, `prefix.2`, ...: a list of plain values.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.indexes(prefix)
            .into_iter()
            .filter_map(|i| self.get(&format!("{prefix}.{i}")).map(str::to_string))
            .collect()
    }

    pub fn filters(&self) -> ApiResult<Vec<Filter>> {
        let mut out = Vec::new();
        for i in self.indexes("Filter") {
            let name = self.require(&format!("Filter.{i}.Name"))?.to_string();
            let values = self.list(&format!("Filter.{i}.Value"));
            out.push(Filter { name, values });
        }
        Ok(out)
    }

    /// `Tag.N.Key` / `Tag.N.Value` under `prefix` (`Tag`, or `TagSpecification.1.Tag`).
    pub fn tags(&self, prefix: &str) -> ApiResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        for i in self.indexes(prefix) {
            let key = self.require(&format!("{prefix}.{i}.Key"))?.to_string();
            let value = self
                .get(&format!("{prefix}.{i}.Value"))
                .unwrap_or("")
                .to_string();
            out.push((key, value));
        }
        Ok(out)
    }

    /// The tags of `TagSpecification`s for `resource_type` (`vpc`, `subnet`, ...).
    pub fn tag_specifications(&self, resource_type: &str) -> ApiResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        for i in self.indexes("TagSpecification") {
            let kind = self.get(&format!("TagSpecification.{i}.ResourceType"));
            if kind.is_none_or(|k| k == resource_type) {
                out.extend(self.tags(&format!("TagSpecification.{i}.Tag"))?);
            }
        }
        Ok(out)
    }

    pub fn ip_permissions(&self) -> ApiResult<Vec<IpPermission>> {
        let mut out = Vec::new();
        for i in self.indexes("IpPermissions") {
            let p = format!("IpPermissions.{i}");
            let described = |list: &str, key: &str| -> Vec<(String, Option<String>)> {
                self.indexes(&format!("{p}.{list}"))
                    .into_iter()
                    .filter_map(|j| {
                        let at = format!("{p}.{list}.{j}");
                        let v = self.get(&format!("{at}.{key}"))?;
                        let d = self.get(&format!("{at}.Description"));
                        Some((v.to_string(), d.map(str::to_string)))
                    })
                    .collect()
            };
            let mut groups = described("Groups", "GroupId");
            groups.extend(described("Groups", "GroupName"));
            out.push(IpPermission {
                protocol: self.require(&format!("{p}.IpProtocol"))?.to_string(),
                from_port: self.int(&format!("{p}.FromPort"))?,
                to_port: self.int(&format!("{p}.ToPort"))?,
                ip_ranges: described("IpRanges", "CidrIp"),
                groups,
            });
        }
        Ok(out)
    }
}

impl Filter {
    /// Whether `value` matches one of the filter's values, with `*` and `?` as wildcards.
    pub fn matches(&self, value: &str) -> bool {
        self.values.iter().any(|p| wildcard(p, value))
    }
}

fn wildcard(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < s.len() {
        if i < p.len() && (p[i] == '?' || p[i] == s[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(st) = star {
            i = st + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_filters_tags_and_permissions_are_read_in_index_order() {
        let body = "Action=DescribeSubnets&Version=2016-11-15&SubnetId.2=subnet-b&SubnetId.10=subnet-c&SubnetId.1=subnet-a\
&Filter.1.Name=tag%3AName&Filter.1.Value.1=web*&Filter.1.Value.2=db\
&TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=my-vpc\
&TagSpecification.2.ResourceType=subnet&TagSpecification.2.Tag.1.Key=Name&TagSpecification.2.Tag.1.Value=other\
&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=22\
&IpPermissions.1.IpRanges.1.CidrIp=203.0.113.10%2F32&IpPermissions.1.IpRanges.1.Description=my+laptop";
        let p = Params::parse(body.as_bytes()).unwrap();
        assert_eq!(p.action().unwrap(), "DescribeSubnets");
        assert_eq!(p.list("SubnetId"), ["subnet-a", "subnet-b", "subnet-c"]);
        let f = p.filters().unwrap();
        assert_eq!(f[0].name, "tag:Name");
        assert!(f[0].matches("web-1") && f[0].matches("db") && !f[0].matches("app"));
        assert_eq!(
            p.tag_specifications("vpc").unwrap(),
            [("Name".to_string(), "my-vpc".to_string())]
        );
        let perm = &p.ip_permissions().unwrap()[0];
        assert_eq!((perm.from_port, perm.to_port), (Some(22), Some(22)));
        assert_eq!(
            perm.ip_ranges,
            [("203.0.113.10/32".to_string(), Some("my laptop".to_string()))]
        );
    }

    #[test]
    fn repeated_and_missing_parameters_are_errors() {
        let e = Params::parse(b"Action=A&Action=B").unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        let p = Params::parse(b"Version=2016-11-15").unwrap();
        assert_eq!(p.action().unwrap_err().code, "MissingParameter");
        let p = Params::parse(b"DryRun=maybe").unwrap();
        assert_eq!(p.dry_run().unwrap_err().code, "InvalidParameterValue");
        for bad in [
            &b"VpcId.99999999999999999999=vpc-1"[..],
            b"VpcId.0=vpc-1",
            b"Filter.1.Value.=x",
        ] {
            let e = Params::parse(bad).unwrap_err();
            assert_eq!(e.code, "InvalidParameterValue", "{e}");
        }
        let p = Params::parse(b"VpcId.4294967295=vpc-1&Filter.1.Name=a.1").unwrap();
        assert_eq!(p.list("VpcId"), ["vpc-1"]);
    }

    #[test]
    fn wildcards_match_like_ec2_filters() {
        assert!(wildcard("*", ""));
        assert!(wildcard("10.0.*", "10.0.2.0/24"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "abbc"));
        assert!(wildcard("*b*b", "abab"));
        assert!(!wildcard("vpc-1", "vpc-12"));
    }
}
